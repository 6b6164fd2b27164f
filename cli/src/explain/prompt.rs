//! Prompts for auto-interp (delphi's explainer, detection and fuzzing scorers) and
//! the parsing of the model's answers.
//!
//! Explainer examples (TRAINING.md, Auto-interp): tokens whose activation exceeds
//! 0.3 × the feature's maximum are wrapped in `<< >>` (a run of consecutive marked
//! tokens shares one pair), and each example is followed by
//! `Activations: ("tok" : n), ...` with n = ceil(10 · a / max) for every token with
//! a > 0. The answer's last `[EXPLANATION]:` line is the explanation.

use super::model::Message;

/// One context window: its tokens as text and the feature's activation on each.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Token texts, in order.
    pub tokens: Vec<String>,
    /// The feature's activation on each token (0 where it does not fire).
    pub acts: Vec<f32>,
}

impl Window {
    /// The largest activation in the window (0 for an empty or silent window).
    pub fn max_act(&self) -> f32 {
        self.acts.iter().copied().fold(0.0, f32::max)
    }
}

/// Fraction of the maximum above which a token is marked for the explainer.
pub const MARK_FRACTION: f32 = 0.3;

/// The window's text with the tokens flagged by `mark` wrapped in `<< >>`
/// (consecutive flagged tokens share one pair).
pub fn marked_text(tokens: &[String], mark: &[bool]) -> String {
    let mut s = String::new();
    let mut open = false;
    for (t, &m) in tokens.iter().zip(mark) {
        if m && !open {
            s.push_str("<<");
            open = true;
        } else if !m && open {
            s.push_str(">>");
            open = false;
        }
        s.push_str(t);
    }
    if open {
        s.push_str(">>");
    }
    s
}

/// The activation level 0–10 of `a` relative to `max`: ceil(10 · a / max), clamped.
pub fn level(a: f32, max: f32) -> u32 {
    if a.is_nan() || max.is_nan() || a <= 0.0 || max <= 0.0 {
        return 0;
    }
    ((10.0 * a / max).ceil() as u32).min(10)
}

const EXPLAINER_SYSTEM: &str = "You are a meticulous AI researcher conducting an important \
investigation into patterns found in language. Your task is to analyze text and provide an \
explanation that thoroughly encapsulates possible patterns found in it.
Guidelines:
You will be given a list of text examples on which special words are selected and between \
delimiters like <<this>>. If a sequence of consecutive tokens all are important, the entire \
sequence of tokens will be contained between delimiters <<just like this>>. How important each \
token is for the behavior is listed after each example in parentheses, from 1 to 10.
- Try to produce a concise final description. Simply describe the text features that are \
common in the examples, and what patterns you found.
- If the examples are uninformative, you don't need to mention them. Don't focus on giving \
examples of important tokens, but try to summarize the patterns found in the examples.
- Do not mention the marker tokens (<< >>) in your explanation.
- Do not make lists of possible explanations. Keep your explanations short and concise.
- The last line of your response must be the formatted explanation, using [EXPLANATION]:";

/// The explainer's messages for `examples`, marked relative to `max` (the
/// feature's maximum activation; the examples' own maximum when `max` is 0).
pub fn explainer_messages(examples: &[Window], max: f32) -> Vec<Message> {
    let max = if max > 0.0 {
        max
    } else {
        examples.iter().map(Window::max_act).fold(0.0, f32::max)
    };
    let mut user = String::new();
    for (i, w) in examples.iter().enumerate() {
        let mark: Vec<bool> = w.acts.iter().map(|&a| a > MARK_FRACTION * max).collect();
        user.push_str(&format!(
            "Example {}: {}\n",
            i + 1,
            marked_text(&w.tokens, &mark)
        ));
        let acts: Vec<String> = w
            .tokens
            .iter()
            .zip(&w.acts)
            .filter(|&(_, &a)| level(a, max) > 0)
            .map(|(t, &a)| format!("(\"{}\" : {})", t.trim(), level(a, max)))
            .collect();
        user.push_str(&format!("Activations: {}\n\n", acts.join(", ")));
    }
    vec![
        Message::system(EXPLAINER_SYSTEM),
        Message::user(user.trim_end()),
    ]
}

/// The explanation in an explainer's answer: the text after the last
/// `[EXPLANATION]:` marker (case-insensitive), trimmed; an error when there is
/// none or it is empty.
pub fn parse_explanation(answer: &str) -> Result<String, String> {
    let lower = answer.to_ascii_lowercase();
    let key = "[explanation]:";
    let at = lower
        .rfind(key)
        .ok_or_else(|| format!("the answer has no [EXPLANATION]: line: {:?}", clip(answer)))?;
    let rest = answer[at + key.len()..].lines().next().unwrap_or("").trim();
    if rest.is_empty() {
        return Err(format!(
            "the answer's [EXPLANATION]: line is empty: {:?}",
            clip(answer)
        ));
    }
    Ok(rest.to_string())
}

/// For a model that does not follow the answer format (small local models
/// rarely write the `[EXPLANATION]:` line): the answer's first non-empty line,
/// without list markers, at most 200 characters; `None` for an empty answer.
pub fn fallback_explanation(answer: &str) -> Option<String> {
    let line = answer
        .lines()
        .map(|l| l.trim().trim_start_matches(['*', '-', '#', ' ']).trim())
        .find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// The two scorers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    /// Does the plain example show the feature?
    Detection,
    /// Are the highlighted tokens the ones the explanation describes?
    Fuzzing,
}

const DETECTION_SYSTEM: &str = "You are an intelligent and meticulous linguistics researcher. \
You will be given a certain feature of text, such as \"male pronouns\" or \"text with negative \
sentiment\". You will then be given several text examples. Your task is to determine which \
examples possess the feature. For each example in turn, return 1 if the example possesses the \
feature or 0 if it does not. You must return your response as a valid Python list, such as \
[1, 0, 0, 1, 0], with one number per example. Do not return anything else.";

const FUZZING_SYSTEM: &str = "You are an intelligent and meticulous linguistics researcher. \
You will be given a certain feature of text, such as \"male pronouns\" or \"text with negative \
sentiment\". You will then be given several text examples in which some tokens are highlighted \
between delimiters like <<this>>. Your task is to determine, for each example, whether the \
highlighted tokens are the ones the feature describes. For each example in turn, return 1 if \
the highlighting is correct or 0 if it is not. You must return your response as a valid Python \
list, such as [1, 0, 0, 1, 0], with one number per example. Do not return anything else.";

/// The scorer's messages: the explanation and the examples (already marked for
/// fuzzing), numbered from 1.
pub fn scorer_messages(kind: ScoreKind, explanation: &str, texts: &[String]) -> Vec<Message> {
    let system = match kind {
        ScoreKind::Detection => DETECTION_SYSTEM,
        ScoreKind::Fuzzing => FUZZING_SYSTEM,
    };
    let mut user = format!("Feature explanation: {explanation}\n\nText examples:\n\n");
    for (i, t) in texts.iter().enumerate() {
        user.push_str(&format!("Example {}: {}\n", i + 1, t));
    }
    vec![Message::system(system), Message::user(user.trim_end())]
}

/// The scorer's answer for `n` examples: the last `[...]` list in it, of `n`
/// numbers each 0 or 1 (probabilities in [0, 1] are accepted too).
pub fn parse_answers(answer: &str, n: usize) -> Result<Vec<f64>, String> {
    let end = answer
        .rfind(']')
        .ok_or_else(|| format!("no [...] list in the answer: {:?}", clip(answer)))?;
    let start = answer[..end]
        .rfind('[')
        .ok_or_else(|| format!("no [...] list in the answer: {:?}", clip(answer)))?;
    let body = &answer[start + 1..end];
    let mut out = Vec::new();
    for part in body.split(',') {
        let p = part.trim().trim_matches(|c| c == '"' || c == '\'');
        if p.is_empty() && body.trim().is_empty() {
            break;
        }
        let v: f64 = p
            .parse()
            .map_err(|_| format!("{p:?} in the answer's list is not a number"))?;
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{v} in the answer's list is not in [0, 1]"));
        }
        out.push(v);
    }
    if out.len() != n {
        return Err(format!(
            "the answer's list has {} numbers for {n} examples: {:?}",
            out.len(),
            clip(answer)
        ));
    }
    Ok(out)
}

fn clip(s: &str) -> String {
    let t: String = s.chars().take(200).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(tokens: &[&str], acts: &[f32]) -> Window {
        Window {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            acts: acts.to_vec(),
        }
    }

    #[test]
    fn marking_wraps_runs_and_levels_round_up() {
        let ex = w(
            &["The", " cat", " sat", " on", " mats"],
            &[0.0, 5.0, 4.0, 0.5, 10.0],
        );
        let mark: Vec<bool> = ex.acts.iter().map(|&a| a > 3.0).collect();
        assert_eq!(
            marked_text(&ex.tokens, &mark),
            "The<< cat sat>> on<< mats>>"
        );
        assert_eq!(level(0.0, 10.0), 0);
        assert_eq!(level(0.01, 10.0), 1);
        assert_eq!(level(5.0, 10.0), 5);
        assert_eq!(level(5.01, 10.0), 6);
        assert_eq!(level(12.0, 10.0), 10);
        assert_eq!(level(f32::NAN, 10.0), 0);
    }

    #[test]
    fn explainer_prompt_on_fixed_examples() {
        let ex = [
            w(&["I", " have", " 3", " cats"], &[0.0, 0.0, 8.0, 1.0]),
            w(&["x", "=", "42"], &[0.0, 0.5, 2.0]),
        ];
        let m = explainer_messages(&ex, 8.0);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.ends_with("using [EXPLANATION]:"));
        // 0.3 * 8 = 2.4: only " 3" is marked; levels ceil(10 a / 8).
        assert_eq!(
            m[1].content,
            "Example 1: I have<< 3>> cats\nActivations: (\"3\" : 10), (\"cats\" : 2)\n\n\
             Example 2: x=42\nActivations: (\"=\" : 1), (\"42\" : 3)"
        );
        // max 0: the examples' own maximum.
        assert_eq!(explainer_messages(&ex, 0.0), m);
    }

    #[test]
    fn explanation_is_the_last_marked_line() {
        let a = "Thinking...\n[EXPLANATION]: first\nmore\n[Explanation]:  digits in code \n";
        assert_eq!(parse_explanation(a).unwrap(), "digits in code");
        assert!(parse_explanation("no marker here").is_err());
        assert!(parse_explanation("[EXPLANATION]:   \n").is_err());
    }

    #[test]
    fn fallback_takes_the_first_line() {
        assert_eq!(
            fallback_explanation("\n\n* Python code examples.\nMore text").as_deref(),
            Some("Python code examples.")
        );
        assert_eq!(fallback_explanation(" \n "), None);
        assert_eq!(
            fallback_explanation(&"x".repeat(500)).map(|s| s.len()),
            Some(200)
        );
    }

    #[test]
    fn answers_parse_the_last_list() {
        assert_eq!(
            parse_answers("sure: [1, 0] no wait [0, 1, 1]", 3).unwrap(),
            vec![0.0, 1.0, 1.0]
        );
        assert_eq!(
            parse_answers("[\"1\",'0', 0.75]", 3).unwrap(),
            vec![1.0, 0.0, 0.75]
        );
        assert!(
            parse_answers("[1, 0]", 3)
                .unwrap_err()
                .contains("2 numbers for 3")
        );
        assert!(parse_answers("[1, 2, 0]", 3).is_err());
        assert!(parse_answers("[1, yes, 0]", 3).is_err());
        assert!(parse_answers("1 0 1", 3).is_err());
        assert!(parse_answers("[]", 1).is_err());
        assert_eq!(parse_answers("[]", 0).unwrap(), Vec::<f64>::new());
    }

    #[test]
    fn scorer_prompt_numbers_examples() {
        let m = scorer_messages(
            ScoreKind::Fuzzing,
            "numbers",
            &["a<<1>>".to_string(), "b".to_string()],
        );
        assert!(m[0].content.contains("highlighted"));
        assert_eq!(
            m[1].content,
            "Feature explanation: numbers\n\nText examples:\n\nExample 1: a<<1>>\nExample 2: b"
        );
        let d = scorer_messages(ScoreKind::Detection, "numbers", &["a".to_string()]);
        assert!(!d[0].content.contains("highlighted"));
    }
}
