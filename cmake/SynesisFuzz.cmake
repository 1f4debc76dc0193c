# Fuzz builds (SYNESIS_FUZZ=ON, clang): libFuzzer only sees coverage of instrumented code, and the
# QUIC fuzz targets (tests/fuzz) are mostly about what ngtcp2 hands the library after parsing a
# packet. So, when the dependencies are the bundled ones, ngtcp2 is built once more from the same
# upstream tarball bootstrap-deps.sh downloaded, with clang's coverage instrumentation and ASan
# (its assertions stay on, as in every ngtcp2 build), and the fuzz tree links that copy instead of
# the cached one. OpenSSL stays the cached, uninstrumented build. SYNESIS_FUZZ_NGTCP2=OFF (or
# system packages) keeps the uninstrumented ngtcp2.

option(SYNESIS_FUZZ_NGTCP2 "Fuzz builds: instrument ngtcp2 too (bundled dependencies only)" ON)
option(SYNESIS_FUZZ_COVERAGE
       "Fuzz builds: source-based coverage instead of the sanitizers (to measure corpora)" OFF)

# Flags of every project target (tests/fuzz links the targets with -fsanitize=fuzzer) and of the
# instrumented ngtcp2. The coverage variant (the fuzz-coverage preset) only replays corpora for
# tests/fuzz/coverage.sh; it finds nothing by itself.
if(SYNESIS_FUZZ_COVERAGE)
  set(SYNESIS_FUZZ_COMPILE_FLAGS -fsanitize=fuzzer-no-link -fprofile-instr-generate
      -fcoverage-mapping)
  set(SYNESIS_FUZZ_LINK_FLAGS -fprofile-instr-generate)
  set(_ng_flags "-fsanitize=fuzzer-no-link -fprofile-instr-generate -fcoverage-mapping")
else()
  set(SYNESIS_FUZZ_COMPILE_FLAGS -fsanitize=fuzzer-no-link,address,undefined
      -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  set(SYNESIS_FUZZ_LINK_FLAGS -fsanitize=address,undefined)
  set(_ng_flags "-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer")
endif()

if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "synesis: SYNESIS_FUZZ needs clang (libFuzzer): use the fuzz preset")
endif()

set(SYNESIS_FUZZ_NGTCP2_INSTRUMENTED OFF)
if(SYNESIS_FUZZ_NGTCP2 AND SYNESIS_DEPS_BUNDLED)
  # <cache>/deps/[cfg-<hash>/]<key>/prefix -> <cache>/src/ngtcp2-<debian version>/
  # ngtcp2_<version>.orig.tar.*
  set(_n 0)
  foreach(_up "../../.." "../../../..")
    if(_n EQUAL 0)
      get_filename_component(_cache_root "${SYNESIS_DEPS_PREFIX}/${_up}" ABSOLUTE)
      file(GLOB _ng_tar "${_cache_root}/src/ngtcp2-*/ngtcp2_${SYNESIS_NGTCP2_VERSION}.orig.tar.*")
      list(FILTER _ng_tar EXCLUDE REGEX "\\.asc$")
      list(LENGTH _ng_tar _n)
    endif()
  endforeach()
  if(_n GREATER 0)
    list(GET _ng_tar 0 _ng_tar)
    include(ExternalProject)
    set(_ng_prefix "${CMAKE_BINARY_DIR}/ngtcp2-instrumented")
    ExternalProject_Add(synesis_ngtcp2_instrumented
      URL "${_ng_tar}"
      PREFIX "${CMAKE_BINARY_DIR}/ngtcp2-instrumented-build"
      CMAKE_ARGS
        -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
        "-DCMAKE_C_FLAGS=${_ng_flags}"
        -DCMAKE_INSTALL_PREFIX=${_ng_prefix} -DCMAKE_INSTALL_LIBDIR=lib
        -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DENABLE_LIB_ONLY=ON -DENABLE_SHARED_LIB=OFF
        -DENABLE_STATIC_LIB=ON -DBUILD_TESTING=OFF -DENABLE_OPENSSL=ON -DENABLE_GNUTLS=OFF
        -DOPENSSL_ROOT_DIR=${SYNESIS_DEPS_PREFIX} -DOPENSSL_USE_STATIC_LIBS=ON
      BUILD_BYPRODUCTS "${_ng_prefix}/lib/libngtcp2.a" "${_ng_prefix}/lib/libngtcp2_crypto_ossl.a"
      DOWNLOAD_EXTRACT_TIMESTAMP ON)
    set_target_properties(synesis_dep::ngtcp2 PROPERTIES
      IMPORTED_LOCATION "${_ng_prefix}/lib/libngtcp2.a")
    set_target_properties(synesis_dep::ngtcp2_crypto_ossl PROPERTIES
      IMPORTED_LOCATION "${_ng_prefix}/lib/libngtcp2_crypto_ossl.a")
    set(SYNESIS_FUZZ_NGTCP2_INSTRUMENTED ON)
    message(STATUS "synesis: fuzz build with ngtcp2 ${SYNESIS_NGTCP2_VERSION} instrumented (${_ng_tar})")
  else()
    message(STATUS "synesis: ngtcp2's source tarball is not in ${_cache_root}/src: fuzzing with the "
                   "uninstrumented ngtcp2")
  endif()
endif()
