//! Control-vector GGUF export, read back by llama.cpp's own Python reader (`gguf`).

mod common;

use std::process::Command;

use common::*;
use saeplug::cvec::write_control_vector;

#[test]
fn gguf_package_reads_the_exported_control_vector() {
    let out = scratch("cvec");
    let path = out.join("cv.gguf");
    let v6: Vec<f32> = (0..576).map(|i| (i as f32 * 0.37).sin()).collect();
    let v3: Vec<f32> = (0..576).map(|i| i as f32 * -0.001).collect();
    write_control_vector(&path, "SmolLM2-135M", &[(6, v6.clone()), (3, v3.clone())]).unwrap();
    let script = r#"
import sys, json, numpy as np
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
f = r.fields
def s(k): return bytes(f[k].parts[f[k].data[0]]).decode()
out = {"arch": s("general.architecture"), "hint": s("controlvector.model_hint"),
       "layers": int(f["controlvector.layer_count"].parts[-1][0]),
       "tensors": {t.name: [int(t.tensor_type), [int(x) for x in t.shape], np.asarray(t.data, dtype=np.float64).tolist()] for t in r.tensors}}
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 with gguf");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["arch"], "controlvector");
    assert_eq!(v["hint"], "SmolLM2-135M");
    assert_eq!(v["layers"], 6);
    let t = v["tensors"].as_object().unwrap();
    assert_eq!(t.len(), 2);
    for (name, want) in [("direction.6", &v6), ("direction.3", &v3)] {
        let e = &t[name];
        assert_eq!(e[0], 0, "{name} is F32");
        assert_eq!(e[1], serde_json::json!([576]));
        let got: Vec<f32> = e[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&got, want, "{name} values");
    }
    // llama.cpp refuses direction.0; so do we, and mismatched lengths.
    assert!(write_control_vector(&path, "x", &[(0, v6.clone())]).is_err());
    assert!(write_control_vector(&path, "x", &[(1, v6.clone()), (2, vec![0.0; 3])]).is_err());
    assert!(write_control_vector(&path, "x", &[(1, vec![f32::NAN; 4])]).is_err());
}
