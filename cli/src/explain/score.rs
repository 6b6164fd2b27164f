//! Detection and fuzzing scores: a scorer model labels shuffled activating and
//! non-activating examples, a few per prompt; the score is the balanced accuracy
//! (TPR + TNR) / 2 at threshold 0.5 (an answer p counts as "activating" when
//! p ≥ 0.5), with the ROC AUC beside it (ties count one half; for 0/1 answers it
//! equals the balanced accuracy).

use saeplug::synthetic::Rng;
use serde_json::{Value, json};

use super::model::ChatModel;
use super::prompt::{
    MARK_FRACTION, ScoreKind, Window, marked_text, parse_answers, scorer_messages,
};

/// What a scoring run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Which scorer.
    pub kind: ScoreKind,
    /// (TPR + TNR) / 2 over the answered examples; `None` when one class got no
    /// answer at all.
    pub balanced_accuracy: Option<f64>,
    /// ROC AUC of the answers (ties count one half); `None` as above.
    pub auc: Option<f64>,
    /// True-positive rate.
    pub tpr: f64,
    /// True-negative rate.
    pub tnr: f64,
    /// Activating examples answered.
    pub n_pos: usize,
    /// Non-activating examples answered.
    pub n_neg: usize,
    /// Prompts sent.
    pub prompts: usize,
    /// Prompts whose answer was unusable (their examples are left out), with why.
    pub errors: Vec<String>,
}

impl Score {
    /// JSON form (the `explanations.json` entry).
    pub fn to_json(&self) -> Value {
        json!({
            "balanced_accuracy": self.balanced_accuracy,
            "auc": self.auc,
            "tpr": self.tpr,
            "tnr": self.tnr,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "prompts": self.prompts,
            "failed_prompts": self.errors.len(),
            "errors": self.errors,
        })
    }
}

/// Balanced accuracy and AUC of answers `p` against `labels` (true = activating).
/// Returns (balanced accuracy, AUC, TPR, TNR, positives, negatives).
pub fn metrics(p: &[f64], labels: &[bool]) -> (Option<f64>, Option<f64>, f64, f64, usize, usize) {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    let tp = p
        .iter()
        .zip(labels)
        .filter(|&(&v, &l)| l && v >= 0.5)
        .count();
    let tn = p
        .iter()
        .zip(labels)
        .filter(|&(&v, &l)| !l && v < 0.5)
        .count();
    let tpr = if n_pos > 0 {
        tp as f64 / n_pos as f64
    } else {
        0.0
    };
    let tnr = if n_neg > 0 {
        tn as f64 / n_neg as f64
    } else {
        0.0
    };
    if n_pos == 0 || n_neg == 0 {
        return (None, None, tpr, tnr, n_pos, n_neg);
    }
    // Mann–Whitney: P(p_pos > p_neg) + 0.5 · P(p_pos = p_neg).
    let mut wins = 0.0;
    for (a, _) in p.iter().zip(labels).filter(|&(_, &l)| l) {
        for (b, _) in p.iter().zip(labels).filter(|&(_, &l)| !l) {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    let auc = wins / (n_pos as f64 * n_neg as f64);
    (Some((tpr + tnr) / 2.0), Some(auc), tpr, tnr, n_pos, n_neg)
}

/// The text a scorer sees for one example: plain for detection; for fuzzing,
/// an activating example has its tokens above 0.3 · `max` marked (its strongest
/// token when none is), a non-activating one a random run of 1–3 tokens.
pub fn example_text(
    kind: ScoreKind,
    w: &Window,
    activating: bool,
    max: f32,
    rng: &mut Rng,
) -> String {
    let n = w.tokens.len();
    match kind {
        ScoreKind::Detection => w.tokens.concat(),
        ScoreKind::Fuzzing => {
            let mut mark = vec![false; n];
            if n == 0 {
                return String::new();
            }
            if activating {
                for (m, &a) in mark.iter_mut().zip(&w.acts) {
                    *m = a > MARK_FRACTION * max;
                }
                if !mark.iter().any(|&m| m) {
                    let best = (0..n)
                        .max_by(|&i, &j| w.acts[i].total_cmp(&w.acts[j]).then(j.cmp(&i)))
                        .unwrap_or(0);
                    mark[best] = true;
                }
            } else {
                let len = 1 + (rng.next_u64() % 3) as usize;
                let len = len.min(n);
                let start = (rng.next_u64() % (n - len + 1) as u64) as usize;
                mark[start..start + len].iter_mut().for_each(|m| *m = true);
            }
            marked_text(&w.tokens, &mark)
        }
    }
}

/// Score `explanation` with `model`: the activating `pos` and non-activating
/// `neg` examples are shuffled by `seed` and sent `per_prompt` at a time. A prompt
/// whose answer fails (transport error, malformed list) is recorded in
/// [`Score::errors`] and its examples are left out; the rest are scored.
#[cfg(test)]
#[allow(
    clippy::too_many_arguments,
    reason = "the scoring inputs are all distinct"
)]
pub fn score(
    model: &dyn ChatModel,
    kind: ScoreKind,
    explanation: &str,
    pos: &[Window],
    neg: &[Window],
    max: f32,
    per_prompt: usize,
    seed: u64,
) -> Score {
    score_with(
        model,
        kind,
        explanation,
        pos,
        neg,
        max,
        per_prompt,
        seed,
        false,
    )
}

/// The answer to a one-example prompt from a model that ignores the list format:
/// its first word that is 0/1 or yes/no.
pub fn lenient_single(answer: &str) -> Option<f64> {
    answer
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|w| match w.to_ascii_lowercase().as_str() {
            "1" | "yes" => Some(1.0),
            "0" | "no" => Some(0.0),
            _ => None,
        })
}

/// `score` (the strict form the tests use), and with `lenient` a one-example prompt whose answer has no list is
/// read by [`lenient_single`] (for small local models).
#[allow(
    clippy::too_many_arguments,
    reason = "the scoring inputs are all distinct"
)]
pub fn score_with(
    model: &dyn ChatModel,
    kind: ScoreKind,
    explanation: &str,
    pos: &[Window],
    neg: &[Window],
    max: f32,
    per_prompt: usize,
    seed: u64,
    lenient: bool,
) -> Score {
    let mut rng = Rng::new(seed);
    let mut items: Vec<(String, bool)> = Vec::with_capacity(pos.len() + neg.len());
    for w in pos {
        items.push((example_text(kind, w, true, max, &mut rng), true));
    }
    for w in neg {
        items.push((example_text(kind, w, false, max, &mut rng), false));
    }
    // Fisher–Yates.
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    let mut answers = Vec::new();
    let mut labels = Vec::new();
    let mut errors = Vec::new();
    let mut prompts = 0;
    for chunk in items.chunks(per_prompt.max(1)) {
        prompts += 1;
        let texts: Vec<String> = chunk.iter().map(|(t, _)| t.clone()).collect();
        let msgs = scorer_messages(kind, explanation, &texts);
        let answer = model.chat(&msgs).and_then(|a| {
            parse_answers(&a, chunk.len()).or_else(|e| match lenient_single(&a) {
                Some(v) if lenient && chunk.len() == 1 => Ok(vec![v]),
                _ => Err(e),
            })
        });
        match answer {
            Ok(p) => {
                answers.extend(p);
                labels.extend(chunk.iter().map(|&(_, l)| l));
            }
            Err(e) => errors.push(e),
        }
    }
    let (balanced_accuracy, auc, tpr, tnr, n_pos, n_neg) = metrics(&answers, &labels);
    Score {
        kind,
        balanced_accuracy,
        auc,
        tpr,
        tnr,
        n_pos,
        n_neg,
        prompts,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::model::Message;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn w(tokens: &[&str], acts: &[f32]) -> Window {
        Window {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            acts: acts.to_vec(),
        }
    }

    /// A stand-in scorer: reads the examples of the prompt and answers by a rule.
    struct Rule<F: Fn(&str) -> String>(F, AtomicUsize);
    impl<F: Fn(&str) -> String> ChatModel for Rule<F> {
        fn chat(&self, m: &[Message]) -> Result<String, String> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let texts: Vec<&str> = m[1]
                .content
                .lines()
                .filter_map(|l| l.strip_prefix("Example "))
                .map(|l| l.split_once(": ").map_or("", |x| x.1))
                .collect();
            let out: Vec<String> = texts.iter().map(|t| (self.0)(t)).collect();
            Ok(format!("[{}]", out.join(", ")))
        }
    }

    fn data() -> (Vec<Window>, Vec<Window>) {
        // 10 activating examples "p0".."p9" (digit tokens fire), 10 silent "n0".."n9".
        let pos = (0..10)
            .map(|i| w(&["p", &i.to_string(), " 7"], &[0.0, 0.0, 5.0]))
            .collect();
        let neg = (0..10)
            .map(|i| w(&["n", &i.to_string(), " x"], &[0.0, 0.0, 0.0]))
            .collect();
        (pos, neg)
    }

    #[test]
    fn metrics_known_values_ties_and_all_one() {
        let l = [true, true, true, true, false, false, false, false];
        // TPR 3/4, TNR 2/4.
        let (ba, auc, tpr, tnr, np, nn) = metrics(&[1., 1., 1., 0., 0., 0., 1., 1.], &l);
        assert_eq!((tpr, tnr, np, nn), (0.75, 0.5, 4, 4));
        assert_eq!(ba, Some(0.625));
        assert_eq!(auc, Some(0.625)); // 0/1 answers: AUC = balanced accuracy
        // All one: TPR 1, TNR 0.
        let (ba, auc, ..) = metrics(&[1.0; 8], &l);
        assert_eq!((ba, auc), (Some(0.5), Some(0.5)));
        // Ties at the threshold count as positive; AUC counts ties one half.
        let (ba, auc, tpr, tnr, ..) = metrics(&[0.5; 8], &l);
        assert_eq!((ba, auc, tpr, tnr), (Some(0.5), Some(0.5), 1.0, 0.0));
        let (ba, auc, ..) = metrics(&[0.9, 0.6, 0.5, 0.5, 0.5, 0.2, 0.1, 0.1], &l);
        assert_eq!(ba, Some(0.875)); // TPR 1, TNR 3/4
        // AUC: pairs won 4·4 = 16 minus the ties: positives 0.5, 0.5 against the
        // negative 0.5 tie (2 × 0.5 lost) → 15/16.
        assert_eq!(auc, Some(15.0 / 16.0));
        // One class missing: undefined.
        assert_eq!(metrics(&[1.0, 0.0], &[true, true]).0, None);
    }

    #[test]
    fn detection_by_a_perfect_an_all_one_and_a_partial_scorer() {
        let (pos, neg) = data();
        let perfect = Rule(
            |t: &str| (if t.starts_with('p') { "1" } else { "0" }).into(),
            AtomicUsize::new(0),
        );
        let s = score(
            &perfect,
            ScoreKind::Detection,
            "digit 7",
            &pos,
            &neg,
            5.0,
            5,
            1,
        );
        assert_eq!(s.balanced_accuracy, Some(1.0));
        assert_eq!((s.n_pos, s.n_neg, s.prompts), (10, 10, 4));
        assert_eq!(perfect.1.load(Ordering::Relaxed), 4);
        let all_one = Rule(|_: &str| "1".into(), AtomicUsize::new(0));
        let s = score(&all_one, ScoreKind::Detection, "x", &pos, &neg, 5.0, 5, 1);
        assert_eq!((s.balanced_accuracy, s.tpr, s.tnr), (Some(0.5), 1.0, 0.0));
        // Says 1 for p0..p5 (6 of 10 positives) and for n0, n1 (2 of 10 negatives):
        // TPR 0.6, TNR 0.8, balanced accuracy 0.7.
        let partial = Rule(
            |t: &str| {
                let yes = ["p0", "p1", "p2", "p3", "p4", "p5", "n0", "n1"]
                    .iter()
                    .any(|p| t.starts_with(p));
                (if yes { "1" } else { "0" }).into()
            },
            AtomicUsize::new(0),
        );
        let s = score(&partial, ScoreKind::Detection, "x", &pos, &neg, 5.0, 3, 9);
        assert!((s.balanced_accuracy.unwrap() - 0.7).abs() < 1e-12);
        assert!((s.tpr - 0.6).abs() < 1e-12 && (s.tnr - 0.8).abs() < 1e-12);
        assert_eq!(s.prompts, 7); // 20 examples, 3 per prompt
    }

    #[test]
    fn fuzzing_marks_activating_tokens_and_random_runs() {
        let (pos, neg) = data();
        // Correct highlighting is exactly "<< 7>>" at the end.
        let judge = Rule(
            |t: &str| (if t.ends_with("<< 7>>") { "1" } else { "0" }).into(),
            AtomicUsize::new(0),
        );
        let s = score(&judge, ScoreKind::Fuzzing, "7", &pos, &neg, 5.0, 5, 3);
        assert_eq!(s.balanced_accuracy, Some(1.0));
        let mut rng = Rng::new(5);
        for _ in 0..50 {
            let t = example_text(ScoreKind::Fuzzing, &neg[0], false, 5.0, &mut rng);
            assert_eq!(t.matches("<<").count(), 1, "{t}");
            assert_eq!(t.replace("<<", "").replace(">>", ""), "n0 x");
        }
        // An activating window below the mark fraction marks its strongest token.
        let weak = w(&["a", "b", "c"], &[0.1, 0.2, 0.0]);
        assert_eq!(
            example_text(ScoreKind::Fuzzing, &weak, true, 5.0, &mut rng),
            "a<<b>>c"
        );
    }

    #[test]
    fn lenient_reads_a_single_answer() {
        assert_eq!(lenient_single("Yes, it does."), Some(1.0));
        assert_eq!(lenient_single("The answer: 0."), Some(0.0));
        assert_eq!(lenient_single("No."), Some(0.0));
        assert_eq!(lenient_single("maybe"), None);
        let (pos, neg) = data();
        struct Says(&'static str);
        impl ChatModel for Says {
            fn chat(&self, _: &[Message]) -> Result<String, String> {
                Ok(self.0.to_string())
            }
        }
        let s = score_with(
            &Says("Yes."),
            ScoreKind::Detection,
            "x",
            &pos,
            &neg,
            5.0,
            1,
            1,
            true,
        );
        assert_eq!(
            (s.balanced_accuracy, s.tpr, s.errors.len()),
            (Some(0.5), 1.0, 0)
        );
        // Strict, or several examples per prompt: errors.
        let s = score_with(
            &Says("Yes."),
            ScoreKind::Detection,
            "x",
            &pos,
            &neg,
            5.0,
            1,
            1,
            false,
        );
        assert_eq!(s.errors.len(), 20);
        let s = score_with(
            &Says("Yes."),
            ScoreKind::Detection,
            "x",
            &pos,
            &neg,
            5.0,
            5,
            1,
            true,
        );
        assert_eq!(s.errors.len(), 4);
    }

    #[test]
    fn a_malformed_answer_loses_only_its_prompt() {
        let (pos, neg) = data();
        struct Flaky(AtomicUsize);
        impl ChatModel for Flaky {
            fn chat(&self, m: &[Message]) -> Result<String, String> {
                match self.0.fetch_add(1, Ordering::Relaxed) + 1 {
                    1 => Ok("I think so".into()),
                    2 => Err("connection refused".into()),
                    _ => {
                        let k = m[1].content.matches("\nExample ").count();
                        Ok(format!("[{}]", vec!["1"; k].join(",")))
                    }
                }
            }
        }
        let s = score(
            &Flaky(AtomicUsize::new(0)),
            ScoreKind::Detection,
            "x",
            &pos,
            &neg,
            5.0,
            5,
            1,
        );
        assert_eq!(s.prompts, 4);
        assert_eq!(s.errors.len(), 2);
        assert!(s.errors[0].contains("no [...] list"));
        assert_eq!(s.errors[1], "connection refused");
        assert_eq!(s.n_pos + s.n_neg, 10);
    }
}
