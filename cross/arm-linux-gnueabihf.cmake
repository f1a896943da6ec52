# CMake toolchain: 32-bit Raspberry Pi OS / Debian armhf (ARMv7, hard float), Debian's
# arm-linux-gnueabihf cross compiler, armhf multiarch -dev packages. Used by the cross-armhf
# preset; cross/build armhf installs what it needs.
set(GW_CROSS_TRIPLET arm-linux-gnueabihf)
set(GW_CROSS_PROCESSOR armv7l)
set(GW_CROSS_QEMU qemu-arm-static)
# GCC's -Wpsabi notes ("parameter passing ... changed in GCC 7.1") concern mixing objects built
# by GCC < 7.1 and are noise here: everything is built by Debian's GCC 12.
set(CMAKE_CXX_FLAGS_INIT -Wno-psabi)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
