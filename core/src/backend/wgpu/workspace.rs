//! Device memory reused between calls: each [`Workspace`] keeps its storage,
//! staging and uniform buffers and its bind groups, and grows a buffer (to the next
//! power of two) only when a call needs more than it holds. The backend keeps a
//! pool of workspaces; a call checks one out, so calls from several threads never
//! share one, and a repeated call of the same shape creates no buffer and no bind
//! group.
//!
//! A call records its dispatches (the `Params` of each go to a slot of one uniform
//! buffer, identical `Params` sharing a slot), then [`Call::submit_read`] writes the
//! uniforms, records the passes, copies the results to the staging buffer and reads
//! them into the workspace's host scratch. The caller's outputs are written from
//! that scratch by [`WgpuBackend::call`]'s `commit`, once, after every check passed.

use std::collections::HashMap;

use saeplug_shaders as sh;

use super::{Params, WgpuBackend, lock};
use crate::error::{Error, Result};

/// Bind groups one workspace caches before it starts afresh: each call shape uses a
/// few, and a host cycling through many shapes (or many SAEs) must not grow forever.
const MAX_BIND_GROUPS: usize = 4096;

/// Buffers larger than this are released at the end of the call that grew them: a
/// one-off huge batch does not pin its memory, and at that size creating a buffer
/// costs nothing next to the work in it.
const KEEP_BYTES: u64 = 64 << 20;

/// Smallest buffer a workspace creates (bytes).
const MIN_BYTES: u64 = 256;

/// A bind group's identity: the kernel, the uniform slot at binding 0 and the
/// buffers at the other bindings (held, so their identity cannot be reused while
/// the key lives).
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    kernel: &'static str,
    slot: u32,
    bufs: Vec<(u32, wgpu::Buffer)>,
}

enum Op {
    /// Zero the first `.1` bytes of a buffer.
    Clear(wgpu::Buffer, u64),
    Dispatch {
        kernel: &'static sh::Kernel,
        key: BindKey,
        groups: (u32, u32, u32),
    },
}

/// Reusable buffers and bind groups for one call at a time.
#[derive(Default)]
pub(crate) struct Workspace {
    /// Storage buffers (STORAGE | COPY_SRC | COPY_DST) by role.
    storage: HashMap<&'static str, wgpu::Buffer>,
    /// Read-back buffer (MAP_READ | COPY_DST).
    staging: Option<wgpu::Buffer>,
    /// One `Params` per slot, `uniform_align` bytes apart.
    uniforms: Option<wgpu::Buffer>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    /// Recorded since the last submission.
    ops: Vec<Op>,
    params: Vec<Params>,
    uniform_bytes: Vec<u8>,
    /// Host scratch the read-backs land in.
    host: Vec<f32>,
    /// Buffers and bind groups created by this workspace (for tests and benches).
    created: u64,
}

impl Workspace {
    /// Forget everything recorded but not submitted (after a failed call).
    fn reset(&mut self) {
        self.ops.clear();
        self.params.clear();
    }

    /// Release buffers over [`KEEP_BYTES`] and the bind groups that use them.
    fn trim(&mut self) {
        let big: Vec<&'static str> = self
            .storage
            .iter()
            .filter(|(_, b)| b.size() > KEEP_BYTES)
            .map(|(k, _)| *k)
            .collect();
        for k in big {
            if let Some(b) = self.storage.remove(k) {
                self.forget(&b);
            }
        }
        if self.staging.as_ref().is_some_and(|s| s.size() > KEEP_BYTES) {
            self.staging = None;
        }
    }

    /// Drop the cached bind groups that bind `b`, then `b` itself.
    fn forget(&mut self, b: &wgpu::Buffer) {
        self.bind_groups
            .retain(|k, _| !k.bufs.iter().any(|(_, kb)| kb == b));
        b.destroy();
    }
}

/// Size bucket for `bytes`: the next power of two, capped at `cap` (the binding
/// limit) but never below `bytes`.
fn bucket(bytes: u64, cap: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    b.checked_next_power_of_two().unwrap_or(b).min(cap).max(b)
}

/// One call's view of the backend and its checked-out workspace.
pub(crate) struct Call<'a> {
    pub(crate) gpu: &'a WgpuBackend,
    ws: &'a mut Workspace,
}

impl Call<'_> {
    /// The workspace's storage buffer for `role`, at least `bytes` long (grown,
    /// never shrunk; growing drops the bind groups of the old buffer).
    pub(crate) fn buffer(&mut self, role: &'static str, bytes: u64) -> wgpu::Buffer {
        if let Some(b) = self.ws.storage.get(role)
            && b.size() >= bytes.max(4)
        {
            return b.clone();
        }
        if let Some(old) = self.ws.storage.remove(role) {
            self.ws.forget(&old);
        }
        let b = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(role),
            size: bucket(bytes, self.gpu.max_chunk),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ws.created += 1;
        self.ws.storage.insert(role, b.clone());
        b
    }

    /// The buffer for `role` holding `data`. The write lands before the next
    /// submission's commands run, so a role is uploaded at most once per submission.
    pub(crate) fn upload<T: bytemuck::Pod>(
        &mut self,
        role: &'static str,
        data: &[T],
    ) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let b = self.buffer(role, bytes.len() as u64);
        if !bytes.is_empty() {
            self.gpu.queue.write_buffer(&b, 0, bytes);
        }
        b
    }

    /// The buffer for `role` with its first `n` 4-byte words zeroed (in order with
    /// the recorded dispatches).
    pub(crate) fn zeroed(&mut self, role: &'static str, n: usize) -> wgpu::Buffer {
        let bytes = 4 * n as u64;
        let b = self.buffer(role, bytes);
        if bytes > 0 {
            self.ws.ops.push(Op::Clear(b.clone(), bytes));
        }
        b
    }

    /// Record one dispatch of `k` with `p` at binding 0 and `bufs` at 1, 2, ...
    pub(crate) fn dispatch(
        &mut self,
        k: &'static sh::Kernel,
        p: &Params,
        bufs: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) {
        let at = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32 + 1, (*b).clone()))
            .collect();
        self.record(k, p, at, groups);
    }

    /// Record one dispatch binding `p` at 0 and each `(binding, buffer)`; kernels
    /// that declare shared state but use only part of it name the used bindings.
    pub(crate) fn dispatch_at(
        &mut self,
        k: &'static sh::Kernel,
        p: &Params,
        bufs: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) {
        let at = bufs.iter().map(|(i, b)| (*i, (*b).clone())).collect();
        self.record(k, p, at, groups);
    }

    fn record(
        &mut self,
        k: &'static sh::Kernel,
        p: &Params,
        bufs: Vec<(u32, wgpu::Buffer)>,
        groups: (u32, u32, u32),
    ) {
        let bytes = bytemuck::bytes_of(p);
        let slot = match self
            .ws
            .params
            .iter()
            .position(|q| bytemuck::bytes_of(q) == bytes)
        {
            Some(s) => s,
            None => {
                self.ws.params.push(*p);
                self.ws.params.len() - 1
            }
        };
        self.ws.ops.push(Op::Dispatch {
            kernel: k,
            key: BindKey {
                kernel: k.name,
                slot: slot as u32,
                bufs,
            },
            groups,
        });
    }

    /// The host scratch, resized to `n` floats (contents unspecified until read into).
    pub(crate) fn host_resize(&mut self, n: usize) {
        self.ws.host.resize(n, 0.0);
    }

    /// The host scratch.
    pub(crate) fn host(&mut self) -> &mut [f32] {
        &mut self.ws.host
    }

    /// Submit everything recorded, then copy each `(buffer, 4-byte words, host
    /// offset)` of `reads` into the host scratch at that offset (in words).
    pub(crate) fn submit_read(&mut self, reads: &[(&wgpu::Buffer, usize, usize)]) -> Result<()> {
        let gpu = self.gpu;
        let ws = &mut *self.ws;
        let align = gpu.uniform_align;
        // Uniforms: one slot per distinct Params.
        let need = align * ws.params.len().max(1) as u64;
        if ws.uniforms.as_ref().is_none_or(|u| u.size() < need) {
            // Every cached bind group binds the old uniform buffer.
            ws.bind_groups.clear();
            ws.uniforms = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: need.max(16 * align).next_power_of_two(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            ws.created += 1;
        }
        let Some(ub) = ws.uniforms.clone() else {
            return Err(Error::Backend("uniform buffer missing".into()));
        };
        if !ws.params.is_empty() {
            ws.uniform_bytes.clear();
            ws.uniform_bytes.resize(ws.params.len() * align as usize, 0);
            for (i, p) in ws.params.iter().enumerate() {
                let at = i * align as usize;
                ws.uniform_bytes[at..at + size_of::<Params>()]
                    .copy_from_slice(bytemuck::bytes_of(p));
            }
            gpu.queue.write_buffer(&ub, 0, &ws.uniform_bytes);
        }
        if ws.bind_groups.len() > MAX_BIND_GROUPS {
            ws.bind_groups.clear();
        }
        // Record: consecutive dispatches share one compute pass.
        let mut enc = gpu.encoder();
        let ops = std::mem::take(&mut ws.ops);
        let mut i = 0;
        while i < ops.len() {
            if let Op::Clear(b, bytes) = &ops[i] {
                enc.clear_buffer(b, 0, Some(*bytes));
                i += 1;
                continue;
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("saeplug"),
                timestamp_writes: None,
            });
            while let Some(Op::Dispatch {
                kernel,
                key,
                groups,
            }) = ops.get(i)
            {
                let pipeline = gpu.pipeline(kernel);
                let bg = match ws.bind_groups.get(key) {
                    Some(bg) => bg.clone(),
                    None => {
                        let bg = bind_group(gpu, &pipeline, &ub, key);
                        ws.created += 1;
                        ws.bind_groups.insert(key.clone(), bg.clone());
                        bg
                    }
                };
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
                i += 1;
            }
        }
        ws.params.clear();
        // Read-back: every source into one staging buffer, mapped once.
        let total: u64 = reads.iter().map(|r| 4 * r.1 as u64).sum();
        if total == 0 {
            gpu.queue.submit([enc.finish()]);
            return Ok(());
        }
        if ws.staging.as_ref().is_none_or(|s| s.size() < total) {
            ws.staging = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bucket(total, u64::MAX),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            ws.created += 1;
        }
        let Some(staging) = ws.staging.clone() else {
            return Err(Error::Backend("staging buffer missing".into()));
        };
        let mut off = 0;
        for (src, words, _) in reads {
            let bytes = 4 * *words as u64;
            if bytes > 0 {
                enc.copy_buffer_to_buffer(src, 0, &staging, off, bytes);
            }
            off += bytes;
        }
        let idx = gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..total, move |r| {
            let _ = tx.send(r);
        });
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Backend("buffer map callback never ran".into()))?
            .map_err(|e| Error::Backend(format!("buffer map failed: {e}")))?;
        {
            let view = staging
                .get_mapped_range(..total)
                .map_err(|e| Error::Backend(format!("mapped range: {e}")))?;
            let words: &[f32] = bytemuck::cast_slice(&view[..]);
            let mut at = 0;
            for (_, n, host_off) in reads {
                ws.host[*host_off..host_off + n].copy_from_slice(&words[at..at + n]);
                at += n;
            }
        }
        staging.unmap();
        Ok(())
    }
}

fn bind_group(
    gpu: &WgpuBackend,
    pipeline: &wgpu::ComputePipeline,
    ub: &wgpu::Buffer,
    key: &BindKey,
) -> wgpu::BindGroup {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: ub,
            offset: key.slot as u64 * gpu.uniform_align,
            size: wgpu::BufferSize::new(size_of::<Params>() as u64),
        }),
    }];
    for (binding, b) in &key.bufs {
        entries.push(wgpu::BindGroupEntry {
            binding: *binding,
            resource: b.as_entire_binding(),
        });
    }
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(key.kernel),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// A successful call's workspace: its host scratch holds the results until the
/// caller has copied them out; dropping it returns the workspace to the pool.
pub(crate) struct Done<'a> {
    gpu: &'a WgpuBackend,
    ws: Option<Workspace>,
}

impl Done<'_> {
    /// The results `run` read back.
    pub(crate) fn host(&self) -> &[f32] {
        self.ws.as_ref().map_or(&[], |w| &w.host)
    }
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            ws.trim();
            lock(&self.gpu.pool).push(ws);
        }
    }
}

impl WgpuBackend {
    /// Run `run` on a workspace checked out of the pool, inside the error scopes.
    /// Only when it and the scopes succeed does the caller get the results (in
    /// [`Done::host`]) to copy into its outputs, so a failed call writes nothing; a
    /// workspace whose call failed is dropped, not returned to the pool.
    pub(crate) fn call(&self, run: impl FnOnce(&mut Call<'_>) -> Result<()>) -> Result<Done<'_>> {
        let mut ws = lock(&self.pool).pop().unwrap_or_default();
        ws.reset();
        self.scoped(|| {
            run(&mut Call {
                gpu: self,
                ws: &mut ws,
            })
        })?;
        Ok(Done {
            gpu: self,
            ws: Some(ws),
        })
    }

    /// Buffers and bind groups the pooled workspaces have created so far (a repeated
    /// call of the same shape adds none).
    #[cfg(test)]
    pub(crate) fn workspace_creations(&self) -> u64 {
        lock(&self.pool).iter().map(|w| w.created).sum()
    }
}
