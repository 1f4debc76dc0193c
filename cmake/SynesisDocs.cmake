# The API reference (docs/Doxyfile.in): `cmake --build <dir> --target docs` writes
# <dir>/docs/html/index.html. Not part of the default build; never committed.
# SYNESIS_DOCS_WERROR (CI): any doxygen warning, an undocumented public symbol among them, fails
# the target (WARN_AS_ERROR = FAIL_ON_WARNINGS: the whole reference is still written, with every
# warning listed, then doxygen exits non-zero).
option(SYNESIS_DOCS_WERROR "The docs target fails on any doxygen warning (undocumented symbols included)" OFF)

find_package(Doxygen 1.9 QUIET)
if(NOT DOXYGEN_FOUND)
  if(SYNESIS_DOCS_WERROR)
    message(FATAL_ERROR "SYNESIS_DOCS_WERROR is ON but doxygen was not found (apt-get install doxygen)")
  endif()
  message(STATUS "doxygen not found: the target docs (API reference) only says so (apt-get install doxygen)")
  add_custom_target(docs
    COMMAND ${CMAKE_COMMAND} -E echo
            "docs: skipped, doxygen not found (apt-get install doxygen, then configure again)"
    VERBATIM)
  return()
endif()

set(SYNESIS_DOCS_OUT "${CMAKE_CURRENT_BINARY_DIR}/docs")
if(SYNESIS_DOCS_WERROR)
  set(SYNESIS_DOXYGEN_WARN_AS_ERROR FAIL_ON_WARNINGS)
else()
  set(SYNESIS_DOXYGEN_WARN_AS_ERROR NO)
endif()
configure_file("${CMAKE_CURRENT_SOURCE_DIR}/docs/Doxyfile.in" "${SYNESIS_DOCS_OUT}/Doxyfile" @ONLY)
# Runs every time it is asked for (a few seconds), so a failing run never leaves an output that
# looks up to date.
add_custom_target(docs
  COMMAND ${CMAKE_COMMAND} -E rm -rf "${SYNESIS_DOCS_OUT}/html"
  COMMAND Doxygen::doxygen "${SYNESIS_DOCS_OUT}/Doxyfile"
  COMMAND ${CMAKE_COMMAND} -E echo "API reference: ${SYNESIS_DOCS_OUT}/html/index.html"
  WORKING_DIRECTORY "${SYNESIS_DOCS_OUT}"
  COMMENT "API reference (doxygen ${DOXYGEN_VERSION}, warnings as errors: ${SYNESIS_DOCS_WERROR})"
  VERBATIM)
