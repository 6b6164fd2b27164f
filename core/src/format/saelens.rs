//! SAELens folders (v6 and pre-6 configs) and Gemma Scope 1/2 files.

use std::path::Path;

use serde_json::Value;

use super::npz::Npz;
use super::{get_usize, read_json};
use crate::error::{Error, Result};
use crate::sae::{Architecture, Format, Normalization, Sae, SaeConfig, SaeWeights, TopKOrder};
use crate::weights::{SafeTensors, Tensor};

fn is_v6(cfg: &Value) -> bool {
    let v = cfg
        .get("metadata")
        .and_then(|m| m.get("sae_lens_version"))
        .or_else(|| cfg.get("sae_lens_version"))
        .and_then(Value::as_str);
    match v {
        Some(v) => v
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 6),
        None => cfg.get("metadata").is_some(),
    }
}

fn parse_norm(cfg: &Value, path: &Path) -> Result<Normalization> {
    match cfg.get("normalize_activations") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(Normalization::None),
        Some(Value::Bool(true)) => expected_average(cfg),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(Normalization::None),
            "expected_average_only_in" => expected_average(cfg),
            "constant_norm_rescale" => Ok(Normalization::ConstantNormRescale),
            "layer_norm" => Ok(Normalization::LayerNorm),
            other => Err(Error::format(
                path,
                format!("unknown normalize_activations '{other}'"),
            )),
        },
        Some(other) => Err(Error::format(
            path,
            format!("normalize_activations has an unexpected value {other}"),
        )),
    }
}

/// `expected_average_only_in`: the scaling factor is folded into the weights when the
/// file is written (SAELens's trainer does so), so at inference it is the identity.
fn expected_average(_cfg: &Value) -> Result<Normalization> {
    Ok(Normalization::None)
}

fn parse_architecture(cfg: &Value, path: &Path) -> Result<(Architecture, bool)> {
    let v6 = is_v6(cfg);
    let mut arch = cfg
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("standard")
        .to_string();
    let mut k = cfg.get("k").and_then(Value::as_u64);
    if !v6 {
        let act = cfg
            .get("activation_fn_str")
            .or_else(|| cfg.get("activation_fn"))
            .and_then(Value::as_str);
        if act == Some("topk") {
            arch = "topk".into();
            k = k.or_else(|| {
                cfg.get("activation_fn_kwargs")
                    .and_then(|kw| kw.get("k"))
                    .and_then(Value::as_u64)
            });
        } else if let Some(a) = act
            && a != "relu"
            && arch == "standard"
        {
            return Err(Error::Unsupported(format!(
                "{}: activation_fn '{a}' is not supported",
                path.display()
            )));
        }
    }
    // `uniform_threshold` marks a BatchTopK SAE whose threshold is a cfg scalar.
    let mut uniform = false;
    let a = match arch.as_str() {
        "standard" => Architecture::Standard,
        "jumprelu" => Architecture::JumpRelu,
        "batchtopk" | "matryoshka_batchtopk" => {
            uniform = true;
            Architecture::JumpRelu
        }
        "gated" => Architecture::Gated,
        "topk" => Architecture::TopK {
            k: k.ok_or_else(|| Error::format(path, "topk SAE without 'k'"))? as usize,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: cfg
                .get("rescale_acts_by_decoder_norm")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "transcoder"
        | "skip_transcoder"
        | "jumprelu_transcoder"
        | "jumprelu_skip_transcoder"
        | "matching_pursuit"
        | "temporal" => {
            return Err(Error::Unsupported(format!(
                "{}: architecture '{arch}' is not supported yet",
                path.display()
            )));
        }
        other => return Err(Error::UnknownArchitecture(other.to_string())),
    };
    Ok((a, uniform))
}

/// Open a SAELens folder.
pub(super) fn open_saelens(dir: &Path) -> Result<Sae> {
    let cfg_path = dir.join("cfg.json");
    let cfg = read_json(&cfg_path)?;
    let d_in = get_usize(&cfg, "d_in", &cfg_path)?;
    let d_sae = get_usize(&cfg, "d_sae", &cfg_path)?;
    let (architecture, uniform_threshold) = parse_architecture(&cfg, &cfg_path)?;
    let normalization = parse_norm(&cfg, &cfg_path)?;
    let apply_b_dec_to_input = cfg
        .get("apply_b_dec_to_input")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let hook_name = cfg
        .get("metadata")
        .and_then(|m| m.get("hook_name"))
        .or_else(|| cfg.get("hook_name"))
        .or_else(|| cfg.get("hook_point"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let st = SafeTensors::open(&dir.join("sae_weights.safetensors"))?;
    if st.contains("scaling_factor") {
        let s = st.tensor("scaling_factor")?;
        if s.as_slice().iter().any(|&v| v != 1.0) {
            return Err(Error::Unsupported(format!(
                "{}: legacy 'scaling_factor' tensor with values other than 1",
                dir.display()
            )));
        }
    }
    let b_enc = if architecture == Architecture::Gated {
        st.tensor("b_gate")?
    } else {
        st.tensor("b_enc")?
    };
    let opt = |name: &str| -> Result<Option<Tensor>> {
        if st.contains(name) {
            st.tensor(name).map(Some)
        } else {
            Ok(None)
        }
    };
    let mut threshold = opt("threshold")?;
    if architecture == Architecture::JumpRelu && threshold.is_none() {
        if let Some(lt) = opt("log_threshold")? {
            let v = lt.as_slice().iter().map(|v| v.exp()).collect();
            threshold = Some(Tensor::owned("threshold", lt.shape().to_vec(), v)?);
        } else if uniform_threshold {
            let t = cfg
                .get("topk_threshold")
                .and_then(Value::as_f64)
                .ok_or_else(|| {
                    Error::format(
                        &cfg_path,
                        "batchtopk SAE without a threshold tensor or 'topk_threshold'",
                    )
                })?;
            threshold = Some(Tensor::owned(
                "threshold",
                vec![d_sae],
                vec![t as f32; d_sae],
            )?);
        }
    }
    let w = SaeWeights {
        w_enc: st.tensor("W_enc")?,
        w_enc_transposed: false,
        b_enc,
        w_dec: st.tensor("W_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold,
        r_mag: opt("r_mag")?,
        b_mag: opt("b_mag")?,
    };
    let cfg = SaeConfig {
        d_in,
        d_sae,
        architecture,
        apply_b_dec_to_input,
        normalization,
        hook_name,
        format: Format::SaeLens,
    };
    Sae::assemble(cfg, w, vec![st.file.clone()], Some(dir.to_path_buf()))
}

fn jumprelu_cfg(w: &SaeWeights, format: Format, hook_name: Option<String>) -> Result<SaeConfig> {
    // Shapes are taken from the decoder; `Sae::assemble` checks every other tensor.
    let s = w.w_dec.shape();
    if s.len() != 2 {
        return Err(Error::Unsupported(format!(
            "decoder '{}' has {} dimensions (cross-layer transcoders are not supported)",
            w.w_dec.name(),
            s.len()
        )));
    }
    Ok(SaeConfig {
        d_in: s[1],
        d_sae: s[0],
        architecture: Architecture::JumpRelu,
        apply_b_dec_to_input: false,
        normalization: Normalization::None,
        hook_name,
        format,
    })
}

/// Open a Gemma Scope 2 folder (`config.json` optional + `params.safetensors`).
pub(super) fn open_gemma_scope_2(dir: &Path) -> Result<Sae> {
    let cfg_path = dir.join("config.json");
    let mut hook_name = None;
    if cfg_path.is_file() {
        let cfg = read_json(&cfg_path)?;
        if let Some(a) = cfg.get("architecture").and_then(Value::as_str)
            && a != "jump_relu"
            && a != "jumprelu"
        {
            return Err(Error::UnknownArchitecture(a.to_string()));
        }
        hook_name = cfg
            .get("hf_hook_point_in")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let st = SafeTensors::open(&dir.join("params.safetensors"))?;
    if st.contains("affine_skip_connection") {
        return Err(Error::Unsupported(format!(
            "{}: affine transcoders (affine_skip_connection) are not supported yet",
            dir.display()
        )));
    }
    let w = SaeWeights {
        w_enc: st.tensor("w_enc")?,
        w_enc_transposed: false,
        b_enc: st.tensor("b_enc")?,
        w_dec: st.tensor("w_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold: Some(st.tensor("threshold")?),
        r_mag: None,
        b_mag: None,
    };
    let cfg = jumprelu_cfg(&w, Format::GemmaScope2, hook_name)?;
    Sae::assemble(cfg, w, vec![st.file.clone()], Some(dir.to_path_buf()))
}

/// Open a Gemma Scope 1 `params.npz` (arrays named `W_enc` or `w_enc`, ...).
pub(super) fn open_gemma_scope_1(file: &Path) -> Result<Sae> {
    let npz = Npz::open(file)?;
    let get = |name: &str| -> Result<Tensor> {
        let lower = name.to_lowercase();
        if npz.arrays.contains_key(name) {
            npz.tensor(name)
        } else if npz.arrays.contains_key(&lower) {
            npz.tensor(&lower)
        } else {
            npz.tensor(name)
        }
    };
    let w = SaeWeights {
        w_enc: get("W_enc")?,
        w_enc_transposed: false,
        b_enc: get("b_enc")?,
        w_dec: get("W_dec")?,
        b_dec: get("b_dec")?,
        threshold: Some(get("threshold")?),
        r_mag: None,
        b_mag: None,
    };
    let cfg = jumprelu_cfg(&w, Format::GemmaScope1, None)?;
    Sae::assemble(cfg, w, vec![npz.file.clone()], Some(file.to_path_buf()))
}
