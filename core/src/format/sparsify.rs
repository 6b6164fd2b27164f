//! EleutherAI sparsify folders: `cfg.json` + `sae.safetensors`.

use std::path::Path;

use super::{Fields, LoadedSae, read_json};
use crate::config::{Architecture, Format, Normalization, SaeConfig, SaeWeights, TopKOrder};
use crate::error::{Error, Result};
use crate::weights::SafeTensors;

pub(super) fn open(dir: &Path) -> Result<LoadedSae> {
    let cfg_path = dir.join("cfg.json");
    let cfg_v = read_json(&cfg_path)?;
    let cfg = Fields::of(&cfg_v, &cfg_path)?;
    let d_in = cfg.req_usize("d_in")?;
    let k = cfg.req_usize("k")?;
    let signed = cfg.bool("signed")?.unwrap_or(false);
    let order = match cfg.str("activation")?.unwrap_or("topk") {
        "topk" if signed => TopKOrder::Signed,
        "topk" => TopKOrder::ReluThenTopK,
        "groupmax" => TopKOrder::GroupMax,
        other => {
            return Err(Error::UnknownArchitecture(format!(
                "sparsify activation '{other}'"
            )));
        }
    };
    let skip_connection = cfg.bool("skip_connection")?.unwrap_or(false);
    let transcode = cfg.bool("transcode")?.unwrap_or(false);
    let num_latents = cfg.usize("num_latents")?.unwrap_or(0);
    let st = SafeTensors::open(&dir.join("sae.safetensors"))?;
    if skip_connection || st.contains("W_skip") {
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
    if num_latents != 0 && num_latents != d_sae {
        return Err(Error::format(
            &cfg_path,
            format!("num_latents = {num_latents} but encoder.weight has {d_sae} rows"),
        ));
    }
    let weights = SaeWeights {
        w_enc,
        w_enc_transposed: true,
        b_enc: st.tensor("encoder.bias")?,
        w_dec: st.tensor("W_dec")?,
        b_dec: st.tensor("b_dec")?,
        threshold: None,
        r_mag: None,
        b_mag: None,
    };
    let config = SaeConfig {
        d_in,
        d_sae,
        architecture: Architecture::TopK {
            k,
            order,
            rescale_by_decoder_norm: false,
        },
        apply_b_dec_to_input: !transcode,
        normalization: Normalization::None,
        hook_name: dir.file_name().and_then(|n| n.to_str()).map(str::to_string),
        format: Format::Sparsify,
    };
    Ok(LoadedSae {
        config,
        weights,
        files: vec![st.file.clone()],
        path: dir.to_path_buf(),
    })
}
