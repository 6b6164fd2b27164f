// common/ito_state.wgsl — per-row ITO solver state shared by the ito_* kernels.
// support [n_rows * k]: chosen atoms in order; coef [n_rows * k]: their coefficients;
// count [n_rows]: support size; done [n_rows]: 1 once a row has stopped;
// iters [n_rows]: steps taken. params.k = k_max, params.k_dim = d_in,
// params.n_cols = d_sae.
@group(0) @binding(1) var<storage, read_write> support: array<u32>;
@group(0) @binding(2) var<storage, read_write> coef: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<u32>;
@group(0) @binding(4) var<storage, read_write> done: array<u32>;
@group(0) @binding(5) var<storage, read_write> iters: array<u32>;
