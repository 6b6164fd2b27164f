//! Every kernel parses, validates with naga (no adapter needed), declares the
//! workgroup size the Rust side mirrors, and emits SPIR-V.

use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_kernel_validates_and_emits_spirv() {
    assert_eq!(saeplug_shaders::ALL.len(), 20);
    for k in saeplug_shaders::ALL {
        let module = naga::front::wgsl::parse_str(k.source)
            .unwrap_or_else(|e| panic!("{}:\n{}", k.name, e.emit_to_string(k.source)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(k.source)));
        assert_eq!(
            module.entry_points.len(),
            1,
            "{}: one entry point per file",
            k.name
        );
        let ep = &module.entry_points[0];
        assert_eq!(ep.name, k.entry);
        assert_eq!(ep.workgroup_size, [k.wg_size, 1, 1], "{}", k.name);
        let spv = naga::back::spv::write_vec(&module, &info, &Default::default(), None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", k.name));
        assert_eq!(spv[0], 0x0723_0203, "{}: SPIR-V magic", k.name);
        assert!(
            k.source.trim_start().starts_with("//"),
            "{}: starts with a comment block",
            k.name
        );
    }
}

#[test]
fn f16_variants_validate_with_the_float16_capability_and_emit_spirv() {
    assert_eq!(saeplug_shaders::ALL_F16.len(), 4);
    for k in saeplug_shaders::ALL_F16 {
        let module = naga::front::wgsl::parse_str(k.source)
            .unwrap_or_else(|e| panic!("{}:\n{}", k.name, e.emit_to_string(k.source)));
        // Without the capability the validator must refuse it ...
        assert!(
            Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .is_err(),
            "{} validated without SHADER_FLOAT16",
            k.name
        );
        // ... and accept it with it.
        let info = Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(k.source)));
        assert_eq!(module.entry_points[0].workgroup_size, [k.wg_size, 1, 1]);
        naga::back::spv::write_vec(&module, &info, &Default::default(), None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", k.name));
    }
}

#[test]
fn params_layout_is_64_bytes() {
    // The Rust mirror (core backend::wgpu::Params) is 16 x 4 bytes.
    let m = naga::front::wgsl::parse_str(saeplug_shaders::DECODE_SPARSE.source).unwrap();
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(m.to_ctx()).unwrap();
    let (h, _) = m
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .expect("Params struct");
    assert_eq!(layouter[h].size, 64);
}
