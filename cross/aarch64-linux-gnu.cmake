# CMake toolchain: 64-bit Raspberry Pi OS / Debian arm64 (Raspberry Pi 3/4/5), Debian's
# aarch64-linux-gnu cross compiler, arm64 multiarch -dev packages. Used by the cross-aarch64
# preset; cross/build aarch64 installs what it needs.
set(GW_CROSS_TRIPLET aarch64-linux-gnu)
set(GW_CROSS_PROCESSOR aarch64)
set(GW_CROSS_QEMU qemu-aarch64-static)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
