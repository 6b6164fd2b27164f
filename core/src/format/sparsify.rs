//! EleutherAI sparsify folders: `cfg.json` + `sae.safetensors`.

use std::path::Path;

use serde_json::Value;

use super::{get_usize, read_json};
use crate::error::{Error, Result};
use crate::sae::{Architecture, Format, Normalization, Sae, SaeConfig, SaeWeights, TopKOrder};
use crate::weights::SafeTensors;

pub(super) fn open(dir: &Path) -> Result<Sae> {
    let cfg_path = dir.join("cfg.json");
    let cfg = read_json(&cfg_path)?;
    let d_in = get_usize(&cfg, "d_in", &cfg_path)?;
    let k = get_usize(&cfg, "k", &cfg_path)?;
    let signed = cfg.get("signed").and_then(Value::as_bool).unwrap_or(false);
    let order = match cfg
        .get("activation")
        .and_then(Value::as_str)
        .unwrap_or("topk")
    {
        "topk" if signed => TopKOrder::Signed,
        "topk" => TopKOrder::ReluThenTopK,
        "groupmax" => TopKOrder::GroupMax,
        other => {
            return Err(Error::UnknownArchitecture(format!(
                "sparsify activation '{other}'"
            )));
        }
    };
    let flag = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
    let st = SafeTensors::open(&dir.join("sae.safetensors"))?;
    if flag("skip_connection") || st.contains("W_skip") {
        return Err(Error::Unsupported(format!(
            "{}: sparsify skip connections (W_skip) are not supported yet",
            dir.display()
        )));
    }
    let w_enc = st.tensor("encoder.weight")?;
    let d_sae = match w_enc.shape() {
        [n, _] => *n,
        s => {
            return Err(Error::Shape {
                path: st.file.path().to_path_buf(),
                name: "encoder.weight".into(),
                expected: vec![0, d_in],
                got: s.to_vec(),
            });
        }
    };
    let num_latents = cfg.get("num_latents").and_then(Value::as_u64).unwrap_or(0) as usize;
    if num_latents != 0 && num_latents != d_sae {
        return Err(Error::format(
            &cfg_path,
            format!("num_latents = {num_latents} but encoder.weight has {d_sae} rows"),
        ));
    }
    let w = SaeWeights {
        w_enc,
        w_enc_transposed: true,
        b_enc: st.tensor("encoder.bias")?,
        w_dec: st.tensor("W_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold: None,
        r_mag: None,
        b_mag: None,
    };
    let cfg = SaeConfig {
        d_in,
        d_sae,
        architecture: Architecture::TopK {
            k,
            order,
            rescale_by_decoder_norm: false,
        },
        apply_b_dec_to_input: !flag("transcode"),
        normalization: Normalization::None,
        hook_name: dir.file_name().and_then(|n| n.to_str()).map(str::to_string),
        format: Format::Sparsify,
    };
    Sae::assemble(cfg, w, vec![st.file.clone()], Some(dir.to_path_buf()))
}
