# Finds the project's dependencies and defines imported targets:
#   synesis_dep::ssl  synesis_dep::crypto  synesis_dep::ngtcp2  synesis_dep::ngtcp2_crypto_ossl
#   synesis_dep::ev   synesis_dep::cjson   (and synesis_dep::cmocka when tests are built)
# OpenSSL and ngtcp2 come from the system when pkg-config finds suitable versions
# (openssl >= 3.5, libngtcp2 >= 1.12 and libngtcp2_crypto_ossl); otherwise, with
# SYNESIS_BOOTSTRAP_DEPS=ON, cmake/bootstrap-deps.sh builds them from Debian's source packages
# into a per-user cache as static PIC libraries. SYNESIS_DEPS_BUNDLED tells which happened.

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

set(SYNESIS_OPENSSL_MIN 3.5.0)
set(SYNESIS_NGTCP2_MIN 1.16.0) # packet counters of ngtcp2_conn_info (docs/operations.md)

set(SYNESIS_DEPS_BUNDLED OFF)
if(NOT SYNESIS_FORCE_BOOTSTRAP)
  pkg_check_modules(SYN_SYS_SSL QUIET IMPORTED_TARGET "openssl>=${SYNESIS_OPENSSL_MIN}")
  pkg_check_modules(SYN_SYS_NGTCP2 QUIET IMPORTED_TARGET "libngtcp2>=${SYNESIS_NGTCP2_MIN}")
  pkg_check_modules(SYN_SYS_NGTCP2_OSSL QUIET IMPORTED_TARGET "libngtcp2_crypto_ossl>=${SYNESIS_NGTCP2_MIN}")
endif()

if(SYN_SYS_SSL_FOUND AND SYN_SYS_NGTCP2_FOUND AND SYN_SYS_NGTCP2_OSSL_FOUND)
  message(STATUS "synesis: system OpenSSL ${SYN_SYS_SSL_VERSION}, ngtcp2 ${SYN_SYS_NGTCP2_VERSION}")
  add_library(synesis_dep::ssl INTERFACE IMPORTED)
  target_link_libraries(synesis_dep::ssl INTERFACE PkgConfig::SYN_SYS_SSL)
  add_library(synesis_dep::crypto INTERFACE IMPORTED)
  target_link_libraries(synesis_dep::crypto INTERFACE PkgConfig::SYN_SYS_SSL)
  add_library(synesis_dep::ngtcp2 INTERFACE IMPORTED)
  target_link_libraries(synesis_dep::ngtcp2 INTERFACE PkgConfig::SYN_SYS_NGTCP2)
  add_library(synesis_dep::ngtcp2_crypto_ossl INTERFACE IMPORTED)
  target_link_libraries(synesis_dep::ngtcp2_crypto_ossl INTERFACE PkgConfig::SYN_SYS_NGTCP2_OSSL)
  set(SYNESIS_OPENSSL_VERSION ${SYN_SYS_SSL_VERSION})
  set(SYNESIS_NGTCP2_VERSION ${SYN_SYS_NGTCP2_VERSION})
else()
  if(NOT SYNESIS_BOOTSTRAP_DEPS)
    message(FATAL_ERROR "synesis: OpenSSL >= ${SYNESIS_OPENSSL_MIN} and ngtcp2 >= ${SYNESIS_NGTCP2_MIN} "
      "(with libngtcp2_crypto_ossl) were not found by pkg-config, and SYNESIS_BOOTSTRAP_DEPS is OFF.")
  endif()
  # The bootstrap runs on every configure: a cached build for the script's current options is found
  # in milliseconds without the network, and an edit of its options (which makes CMake re-run)
  # switches existing build trees to a build with the new options.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/bootstrap-deps.sh")
  if(NOT SYNESIS_DEPS_PREFIX)
    message(STATUS "synesis: system OpenSSL/ngtcp2 too old or missing; bootstrapping from Debian sources")
  endif()
  # MinSizeRel gets dependencies built for size (-Os, no unwind tables), kept apart in the cache.
  set(_boot_args)
  if(CMAKE_BUILD_TYPE STREQUAL "MinSizeRel")
    set(_boot_args --small)
  endif()
  execute_process(
    COMMAND bash "${CMAKE_CURRENT_LIST_DIR}/bootstrap-deps.sh" ${_boot_args}
    OUTPUT_VARIABLE _boot_out
    RESULT_VARIABLE _boot_rv)
  if(NOT _boot_rv EQUAL 0)
    message(FATAL_ERROR "synesis: dependency bootstrap failed (see the messages above)")
  endif()
  string(REGEX MATCH "SYNESIS_DEPS_PREFIX=([^\n]*)" _m "${_boot_out}")
  set(SYNESIS_DEPS_PREFIX "${CMAKE_MATCH_1}" CACHE PATH "Prefix of the bootstrapped OpenSSL and ngtcp2" FORCE)
  set(SYNESIS_DEPS_BUNDLED ON)
  set(_p "${SYNESIS_DEPS_PREFIX}")
  file(STRINGS "${_p}/../.complete" _complete)
  foreach(_line IN LISTS _complete)
    if(_line MATCHES "^openssl=(.*)$")
      set(SYNESIS_OPENSSL_VERSION "${CMAKE_MATCH_1}")
    elseif(_line MATCHES "^ngtcp2=(.*)$")
      set(SYNESIS_NGTCP2_VERSION "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  message(STATUS "synesis: bundled OpenSSL ${SYNESIS_OPENSSL_VERSION}, ngtcp2 ${SYNESIS_NGTCP2_VERSION} from ${_p}")
  add_library(synesis_dep::crypto STATIC IMPORTED)
  set_target_properties(synesis_dep::crypto PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/libcrypto.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS}")
  add_library(synesis_dep::ssl STATIC IMPORTED)
  set_target_properties(synesis_dep::ssl PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/libssl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include"
    INTERFACE_LINK_LIBRARIES "synesis_dep::crypto")
  add_library(synesis_dep::ngtcp2 STATIC IMPORTED)
  set_target_properties(synesis_dep::ngtcp2 PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/libngtcp2.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include"
    INTERFACE_COMPILE_DEFINITIONS "NGTCP2_STATICLIB")
  add_library(synesis_dep::ngtcp2_crypto_ossl STATIC IMPORTED)
  set_target_properties(synesis_dep::ngtcp2_crypto_ossl PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/libngtcp2_crypto_ossl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include"
    INTERFACE_LINK_LIBRARIES "synesis_dep::ngtcp2;synesis_dep::ssl")
endif()

# libev: Debian ships no pkg-config file for it.
find_path(SYNESIS_EV_INCLUDE_DIR ev.h)
find_library(SYNESIS_EV_LIBRARY ev)
if(NOT SYNESIS_EV_INCLUDE_DIR OR NOT SYNESIS_EV_LIBRARY)
  message(FATAL_ERROR "synesis: libev not found (Debian: apt-get install libev-dev)")
endif()
add_library(synesis_dep::ev UNKNOWN IMPORTED)
set_target_properties(synesis_dep::ev PROPERTIES
  IMPORTED_LOCATION "${SYNESIS_EV_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${SYNESIS_EV_INCLUDE_DIR}")

pkg_check_modules(SYN_CJSON REQUIRED IMPORTED_TARGET libcjson)
add_library(synesis_dep::cjson INTERFACE IMPORTED)
target_link_libraries(synesis_dep::cjson INTERFACE PkgConfig::SYN_CJSON)

if(SYNESIS_BUILD_TESTS)
  pkg_check_modules(SYN_CMOCKA REQUIRED IMPORTED_TARGET cmocka)
  add_library(synesis_dep::cmocka INTERFACE IMPORTED)
  target_link_libraries(synesis_dep::cmocka INTERFACE PkgConfig::SYN_CMOCKA)
endif()
