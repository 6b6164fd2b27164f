// common/enable_f16.wgsl — prepended first to the *_f16 kernel variants, which need
// the adapter feature SHADER_F16 (naga capability SHADER_FLOAT16).
enable f16;
