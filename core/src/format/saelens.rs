//! SAELens folders (v6 and pre-6 configs; reader and writer) and Gemma Scope 1/2 files.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::npz::Npz;
use super::{Fields, LoadedSae, read_json};
use crate::config::{Architecture, Format, Normalization, SaeConfig, SaeWeights, TopKOrder};
use crate::error::{Error, Result};
use crate::weights::{SafeTensors, Tensor, write_atomic, write_safetensors};

fn is_v6(cfg: &Fields<'_>) -> Result<bool> {
    let meta = cfg.obj("metadata", "metadata.")?;
    let v = match meta
        .map(|m| m.str("sae_lens_version"))
        .transpose()?
        .flatten()
    {
        Some(v) => Some(v),
        None => cfg.str("sae_lens_version")?,
    };
    Ok(match v {
        Some(v) => v
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 6),
        None => meta.is_some(),
    })
}

fn parse_norm(cfg: &Fields<'_>, path: &Path) -> Result<Normalization> {
    match cfg.raw("normalize_activations") {
        None | Some(Value::Bool(false)) => Ok(Normalization::None),
        // `expected_average_only_in`: the scaling factor is folded into the weights
        // when the file is written (SAELens's trainer does so), so at inference it
        // is the identity.
        Some(Value::Bool(true)) => Ok(Normalization::None),
        Some(Value::String(s)) => match s.as_str() {
            "none" | "expected_average_only_in" => Ok(Normalization::None),
            "constant_norm_rescale" => Ok(Normalization::ConstantNormRescale),
            "layer_norm" => Ok(Normalization::LayerNorm),
            other => Err(Error::format(
                path,
                format!("unknown normalize_activations '{other}'"),
            )),
        },
        Some(other) => Err(Error::format(
            path,
            format!("'normalize_activations' must be a string or a boolean, found {other}"),
        )),
    }
}

fn parse_architecture(cfg: &Fields<'_>, path: &Path) -> Result<(Architecture, bool)> {
    let v6 = is_v6(cfg)?;
    let mut arch = cfg.str("architecture")?.unwrap_or("standard").to_string();
    let mut k = cfg.usize("k")?;
    if !v6 {
        let act = match cfg.str("activation_fn_str")? {
            Some(a) => Some(a),
            None => cfg.str("activation_fn")?,
        };
        if act == Some("topk") {
            arch = "topk".into();
            if k.is_none()
                && let Some(kw) = cfg.obj("activation_fn_kwargs", "activation_fn_kwargs.")?
            {
                k = kw.usize("k")?;
            }
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
            k: k.ok_or_else(|| Error::format(path, "topk SAE without 'k'"))?,
            order: TopKOrder::TopKThenRelu,
            rescale_by_decoder_norm: cfg.bool("rescale_acts_by_decoder_norm")?.unwrap_or(false),
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

fn hook_name(cfg: &Fields<'_>) -> Result<Option<String>> {
    if let Some(m) = cfg.obj("metadata", "metadata.")?
        && let Some(h) = m.str("hook_name")?
    {
        return Ok(Some(h.to_string()));
    }
    Ok(match cfg.str("hook_name")? {
        Some(h) => Some(h),
        None => cfg.str("hook_point")?,
    }
    .map(str::to_string))
}

/// Load a SAELens folder.
pub(super) fn open_saelens(dir: &Path) -> Result<LoadedSae> {
    let cfg_path = dir.join("cfg.json");
    let cfg_v = read_json(&cfg_path)?;
    let cfg = Fields::of(&cfg_v, &cfg_path)?;
    let d_in = cfg.req_usize("d_in")?;
    let d_sae = cfg.req_usize("d_sae")?;
    let (architecture, uniform_threshold) = parse_architecture(&cfg, &cfg_path)?;
    let normalization = parse_norm(&cfg, &cfg_path)?;
    let apply_b_dec_to_input = cfg.bool("apply_b_dec_to_input")?.unwrap_or(true);
    let hook_name = hook_name(&cfg)?;
    let topk_threshold = cfg.f64("topk_threshold")?;
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
            let t = topk_threshold.ok_or_else(|| {
                Error::format(
                    &cfg_path,
                    "batchtopk SAE without a threshold tensor or 'topk_threshold'",
                )
            })?;
            // Sized by a tensor in the file (so bounded by the file size), never by
            // the cfg's d_sae; `Sae` assembly checks it against d_sae.
            let n = b_enc.as_slice().len();
            threshold = Some(Tensor::owned(
                "threshold",
                b_enc.shape().to_vec(),
                vec![t as f32; n],
            )?);
        }
    }
    let weights = SaeWeights {
        w_enc: st.tensor("W_enc")?,
        w_enc_transposed: false,
        b_enc,
        w_dec: st.tensor("W_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold,
        r_mag: opt("r_mag")?,
        b_mag: opt("b_mag")?,
    };
    let config = SaeConfig {
        d_in,
        d_sae,
        architecture,
        apply_b_dec_to_input,
        normalization,
        hook_name,
        format: Format::SaeLens,
    };
    Ok(LoadedSae {
        config,
        weights,
        files: vec![st.file.clone()],
        path: dir.to_path_buf(),
    })
}

/// Write `config` and `weights` as a SAELens v6 folder (`cfg.json` +
/// `sae_weights.safetensors`), each file atomically (see
/// [`crate::weights::write_atomic`]); the folder is created if needed. Top-k SAEs
/// of sparsify order have no SAELens equivalent and are refused. Shapes are
/// checked. [`crate::Sae::save_saelens`] calls this.
///
/// ```
/// # fn main() -> saeplug::Result<()> {
/// use saeplug::{Architecture, Sae, format};
/// let sae = saeplug::synthetic::random_sae(8, 32, Architecture::JumpRelu, 1)?;
/// # let dir = std::env::temp_dir().join(format!("saeplug-doc-wsl-{}", std::process::id()));
/// format::write_saelens(&dir, sae.config(), sae.weights())?;
/// let back = Sae::open(&dir)?;
/// assert_eq!(back.weights().threshold.as_ref().map(|t| t.as_slice()),
///            sae.weights().threshold.as_ref().map(|t| t.as_slice()));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub fn write_saelens(dir: &Path, c: &SaeConfig, w: &SaeWeights) -> Result<()> {
    let norm = match c.normalization {
        Normalization::None => "none",
        Normalization::ConstantNormRescale => "constant_norm_rescale",
        Normalization::LayerNorm => "layer_norm",
    };
    let mut cfg = serde_json::json!({
        "d_in": c.d_in, "d_sae": c.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": norm, "reshape_activations": "none",
        "architecture": c.architecture.name(),
        "metadata": {"sae_lens_version": "6.0.0", "hook_name": c.hook_name},
    });
    if let Architecture::TopK {
        k,
        order,
        rescale_by_decoder_norm,
    } = c.architecture
    {
        if order != TopKOrder::TopKThenRelu {
            return Err(Error::Unsupported(format!(
                "a {order:?} top-k SAE has no SAELens equivalent"
            )));
        }
        cfg["k"] = k.into();
        cfg["rescale_acts_by_decoder_norm"] = rescale_by_decoder_norm.into();
    }
    let (di, ds) = (c.d_in, c.d_sae);
    let n_enc = di
        .checked_mul(ds)
        .ok_or_else(|| Error::invalid(format!("d_in {di} x d_sae {ds} overflows")))?;
    if w.w_enc.as_slice().len() != n_enc {
        return Err(Error::invalid(format!(
            "W_enc has {} values, expected d_in x d_sae = {n_enc}",
            w.w_enc.as_slice().len()
        )));
    }
    let w_enc_t;
    let w_enc: &[f32] = if w.w_enc_transposed {
        w_enc_t = transpose(w.w_enc.as_slice(), ds, di);
        &w_enc_t
    } else {
        w.w_enc.as_slice()
    };
    let mut ts: Vec<(&str, &[usize], &[f32])> = Vec::new();
    let s_enc = [di, ds];
    let s_dec = [ds, di];
    let s_sae = [ds];
    let s_in = [di];
    ts.push(("W_enc", &s_enc, w_enc));
    ts.push(("W_dec", &s_dec, w.w_dec.as_slice()));
    ts.push(("b_dec", &s_in, w.b_dec.as_slice()));
    let bias_name = if c.architecture == Architecture::Gated {
        "b_gate"
    } else {
        "b_enc"
    };
    ts.push((bias_name, &s_sae, w.b_enc.as_slice()));
    for (name, t) in [
        ("threshold", &w.threshold),
        ("r_mag", &w.r_mag),
        ("b_mag", &w.b_mag),
    ] {
        if let Some(t) = t {
            ts.push((name, &s_sae, t.as_slice()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_safetensors(&dir.join("sae_weights.safetensors"), &ts, &BTreeMap::new())?;
    let text = serde_json::to_vec_pretty(&cfg)
        .map_err(|e| Error::invalid(format!("cannot serialise cfg.json: {e}")))?;
    write_atomic(&dir.join("cfg.json"), &text)
}

/// `a` (`rows x cols`, row-major) transposed.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

fn jumprelu_cfg(w: &SaeWeights, format: Format, hook_name: Option<String>) -> Result<SaeConfig> {
    // Shapes are taken from the decoder; `Sae` assembly checks every other tensor.
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

/// Load a Gemma Scope 2 folder (`config.json` optional + `params.safetensors`).
pub(super) fn open_gemma_scope_2(dir: &Path) -> Result<LoadedSae> {
    let cfg_path = dir.join("config.json");
    let mut hook_name = None;
    // Present but not a regular file (a FIFO, a folder) is an error from read_json.
    if std::fs::symlink_metadata(&cfg_path).is_ok() {
        let cfg_v = read_json(&cfg_path)?;
        let cfg = Fields::of(&cfg_v, &cfg_path)?;
        if let Some(a) = cfg.str("architecture")?
            && a != "jump_relu"
            && a != "jumprelu"
        {
            return Err(Error::UnknownArchitecture(a.to_string()));
        }
        hook_name = cfg.str("hf_hook_point_in")?.map(str::to_string);
    }
    let st = SafeTensors::open(&dir.join("params.safetensors"))?;
    if st.contains("affine_skip_connection") {
        return Err(Error::Unsupported(format!(
            "{}: affine transcoders (affine_skip_connection) are not supported yet",
            dir.display()
        )));
    }
    let weights = SaeWeights {
        w_enc: st.tensor("w_enc")?,
        w_enc_transposed: false,
        b_enc: st.tensor("b_enc")?,
        w_dec: st.tensor("w_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold: Some(st.tensor("threshold")?),
        r_mag: None,
        b_mag: None,
    };
    let config = jumprelu_cfg(&weights, Format::GemmaScope2, hook_name)?;
    Ok(LoadedSae {
        config,
        weights,
        files: vec![st.file.clone()],
        path: dir.to_path_buf(),
    })
}

/// Load a Gemma Scope 1 `params.npz` (arrays named `W_enc` or `w_enc`, ...).
pub(super) fn open_gemma_scope_1(file: &Path) -> Result<LoadedSae> {
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
    let weights = SaeWeights {
        w_enc: get("W_enc")?,
        w_enc_transposed: false,
        b_enc: get("b_enc")?,
        w_dec: get("W_dec")?,
        b_dec: get("b_dec")?,
        threshold: Some(get("threshold")?),
        r_mag: None,
        b_mag: None,
    };
    let config = jumprelu_cfg(&weights, Format::GemmaScope1, None)?;
    Ok(LoadedSae {
        config,
        weights,
        files: vec![npz.file.clone()],
        path: file.to_path_buf(),
    })
}
