#!/usr/bin/env bash
# Install the C library, headers, a pkg-config file and a CMake package config.
#   bash scripts/install.sh PREFIX      (builds target/release first;
#   SAEPLUG_PROFILE=debug installs a debug build instead)
# Consumers: `pkg-config --cflags --libs saeplug` (shared) or `--static`, or in CMake
#   find_package(saeplug REQUIRED)  target_link_libraries(app saeplug::saeplug)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: install.sh PREFIX}"
profile="${SAEPLUG_PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release -q -p saeplug-ffi; else cargo build -q -p saeplug-ffi; fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/saeplug"
install -m 644 include/saeplug.h bindings/cxx/saeplug.hpp "$prefix/include/"
install -m 644 target/$profile/libsaeplug_ffi.a "$prefix/lib/libsaeplug.a"
# The SONAME is libsaeplug.so.<ABI major> (ffi/build.rs); the unversioned name
# is the link-time symlink.
major=$(sed -n 's/^#define SAEPLUG_ABI_VERSION_MAJOR \([0-9]*\)$/\1/p' include/saeplug.h)
install -m 755 target/$profile/libsaeplug_ffi.so "$prefix/lib/libsaeplug.so.$major"
ln -sfn "libsaeplug.so.$major" "$prefix/lib/libsaeplug.so"
cat > "$prefix/lib/pkgconfig/saeplug.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: saeplug
Description: Sparse autoencoders as activation plugins (C ABI)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lsaeplug
Libs.private: -lpthread -ldl -lm
PC
cat > "$prefix/lib/cmake/saeplug/saeplugConfig.cmake" <<'CM'
# saeplug CMake package: imported targets saeplug::saeplug (shared) and
# saeplug::saeplug_static.
get_filename_component(_saeplug_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET saeplug::saeplug)
  add_library(saeplug::saeplug SHARED IMPORTED)
  set_target_properties(saeplug::saeplug PROPERTIES
    IMPORTED_LOCATION "${_saeplug_prefix}/lib/libsaeplug.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_saeplug_prefix}/include")
  add_library(saeplug::saeplug_static STATIC IMPORTED)
  set_target_properties(saeplug::saeplug_static PROPERTIES
    IMPORTED_LOCATION "${_saeplug_prefix}/lib/libsaeplug.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_saeplug_prefix}/include"
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
endif()
set(saeplug_FOUND TRUE)
CM
sed "s/@VERSION@/$version/" > "$prefix/lib/cmake/saeplug/saeplugConfigVersion.cmake" <<'CV'
set(PACKAGE_VERSION "@VERSION@")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
CV
echo "installed saeplug $version into $prefix"
