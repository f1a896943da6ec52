# Shared part of the cross toolchain files (aarch64-linux-gnu.cmake, arm-linux-gnueabihf.cmake).
# The caller sets GW_CROSS_TRIPLET, GW_CROSS_PROCESSOR and GW_CROSS_QEMU.
#
# The "sysroot" is the build machine itself: Debian's cross compilers (crossbuild-essential-*)
# and the target's -dev packages installed with multiarch (libfoo-dev:arm64 next to
# libfoo-dev:amd64), so headers come from /usr/include (+ /usr/include/<triplet>), libraries and
# CMake package files from /usr/lib/<triplet>. Nothing is taken from /usr/lib/x86_64-linux-gnu.
# cross/build installs all of it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${GW_CROSS_PROCESSOR})
set(CMAKE_LIBRARY_ARCHITECTURE ${GW_CROSS_TRIPLET})
set(CMAKE_C_COMPILER ${GW_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${GW_CROSS_TRIPLET}-g++)

# Target programs (unit tests, add_test(COMMAND <target>)) run under qemu-user. No
# `-L /usr/<triplet>`: the target's libc6:<arch> (pulled in by every target library) puts the
# loader at /lib/ld-linux-*.so.*, so loader, libc and libraries all come from the target's
# multiarch packages, as on the device. With -L the loader would come from the cross
# toolchain's libc6-<arch>-cross (2.36-8cross1) but libc.so.6 from libc6:<arch>
# (2.36-9+deb12u14): a mismatched pair under which pthread_create hangs.
set(CMAKE_CROSSCOMPILING_EMULATOR ${GW_CROSS_QEMU})

# Programs (python3, mosquitto, victoria-metrics) are the host's; libraries, headers and
# packages only the target's multiarch ones.
set(CMAKE_FIND_ROOT_PATH /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config (rdkafka, sqlite3, libcurl hints) must read the target's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${GW_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Fallback (cross/build chooses it when the target's packages cannot be co-installed with the
# native ones, e.g. a mirror whose target index lags behind the native one so the Multi-Arch:
# same versions differ): a sysroot unpacked from the target's .debs, GW_CROSS_SYSROOT.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES GW_CROSS_SYSROOT)
if(GW_CROSS_SYSROOT)
  set(CMAKE_SYSROOT ${GW_CROSS_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH ${GW_CROSS_SYSROOT})
  set(CMAKE_CROSSCOMPILING_EMULATOR ${GW_CROSS_QEMU} -L ${GW_CROSS_SYSROOT})
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${GW_CROSS_SYSROOT})
  set(ENV{PKG_CONFIG_LIBDIR}
      "${GW_CROSS_SYSROOT}/usr/lib/${GW_CROSS_TRIPLET}/pkgconfig:${GW_CROSS_SYSROOT}/usr/share/pkgconfig")
  return()
endif()

# Packages that are not Multi-Arch: same (libsimdjson-dev) cannot be installed for the target
# next to the native one; cross/build unpacks them into build/cross-sysroot/<triplet>, whose
# usr/ is searched first for CMake package files.
if(NOT DEFINED GW_CROSS_EXTRA_SYSROOT)
  get_filename_component(GW_CROSS_EXTRA_SYSROOT
    "${CMAKE_CURRENT_LIST_DIR}/../build/cross-sysroot/${GW_CROSS_TRIPLET}" ABSOLUTE)
endif()
if(NOT "${GW_CROSS_EXTRA_SYSROOT}/usr" IN_LIST CMAKE_PREFIX_PATH)
  list(PREPEND CMAKE_PREFIX_PATH "${GW_CROSS_EXTRA_SYSROOT}/usr")
endif()
