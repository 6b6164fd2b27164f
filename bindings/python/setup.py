"""Build hook of the saeplug Python package: `pip install ./bindings/python`
runs `cargo build --release -p saeplug-ffi` in the saeplug workspace this folder
belongs to and ships the resulting libsaeplug_ffi.so inside the package.

Environment:
  CARGO_TARGET_DIR      honoured (cargo's own variable; the library is looked up
                        with `cargo metadata`, so .cargo/config.toml is honoured too)
  SAEPLUG_SOURCE_DIR    the workspace root, when this folder was copied elsewhere
  SAEPLUG_CPU_ONLY=1    build without GPU support (no wgpu/Vulkan)
  SAEPLUG_PROFILE=debug build with cargo's dev profile (as scripts/install.sh);
                        default release
  SAEPLUG_NO_STRIP=1    keep the library's debug info (stripped by default: ~5x smaller)
  CARGO                 the cargo binary (default: `cargo` on PATH)
"""

import json
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "libsaeplug_ffi.so"


def workspace_root():
    env = os.environ.get("SAEPLUG_SOURCE_DIR")
    candidates = [env] if env else []
    d = HERE
    for _ in range(4):  # bindings/python -> the repository root, two levels up
        d = os.path.dirname(d)
        candidates.append(d)
    for c in candidates:
        if os.path.isfile(os.path.join(c, "ffi", "Cargo.toml")) and os.path.isfile(
            os.path.join(c, "Cargo.toml")
        ):
            return c
    raise RuntimeError(
        f"saeplug: cannot find the saeplug Cargo workspace above {HERE} (looked for "
        "ffi/Cargo.toml). Install from a checkout (`pip install ./bindings/python`), "
        "or set SAEPLUG_SOURCE_DIR to the repository root."
    )


def build_library():
    root = workspace_root()
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise RuntimeError(
            "saeplug: building the native library needs Rust's cargo on PATH "
            "(https://rustup.rs), or set $CARGO."
        )
    profile = os.environ.get("SAEPLUG_PROFILE", "release")
    if profile not in ("release", "debug"):
        raise RuntimeError(f"saeplug: SAEPLUG_PROFILE={profile!r}: expected release or debug")
    cmd = [cargo, "build", "-p", "saeplug-ffi"] + (["--release"] if profile == "release" else [])
    if os.environ.get("SAEPLUG_CPU_ONLY") == "1":
        cmd.append("--no-default-features")
    print("saeplug: " + " ".join(cmd) + f"  (in {root})", flush=True)
    subprocess.run(cmd, cwd=root, check=True)
    meta = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"],
        cwd=root,
        check=True,
        stdout=subprocess.PIPE,
    )
    target = json.loads(meta.stdout)["target_directory"]
    triple = os.environ.get("CARGO_BUILD_TARGET")
    path = os.path.join(target, *([triple] if triple else []), profile, LIB)
    if not os.path.isfile(path):
        raise RuntimeError(f"saeplug: cargo finished but {path} is missing")
    return path


class BuildPyWithCargo(build_py):
    """build_py, plus the Rust library copied into the package."""

    def run(self):
        super().run()
        src = build_library()
        dst_dir = os.path.join(self.build_lib, "saeplug")
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, LIB)
        if os.path.exists(dst):
            os.remove(dst)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        strip = shutil.which("strip")
        if strip and os.environ.get("SAEPLUG_NO_STRIP") != "1":
            subprocess.run([strip, "--strip-debug", dst], check=True)


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it holds a native library) usable by any
    Python 3: the library is loaded with ctypes, not as an extension module."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(cmdclass={"build_py": BuildPyWithCargo, "bdist_wheel": PlatformWheel})
