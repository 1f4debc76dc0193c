# Debian packages (CPack DEB, one per install component) and the source tarball:
#   cmake --build --preset release --target package          build/release/packages/*.deb
#   cmake --build --preset release --target package_source   build/release/packages/*.tar.xz
# The release preset installs under /usr (bin, lib/<multiarch>, /etc/synesis), as a package must.
#
#   libsynesis-tunnel1     the shared library (component runtime)
#   libsynesis-tunnel-dev  headers, static library, the .so link, pkg-config and CMake files (dev)
#   synesis-tools          the synesis command, its manual page and docs, the systemd units, the
#                          default configuration files as conffiles, the user synesis (tools)
# Dependencies on shared libraries (libc6, libev4, libcjson1) come from dpkg-shlibdeps.
set(SYNESIS_PACKAGE_MAINTAINER "SuperInstance and the synesis-tunnel authors"
    CACHE STRING "Maintainer field of the Debian packages")

set(CPACK_PACKAGE_NAME synesis-tunnel)
set(CPACK_PACKAGE_VENDOR "SuperInstance")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# CPack's default summary: CPackDeb then takes each package's summary from the first line of its
# own CPACK_DEBIAN_<COMPONENT>_DESCRIPTION instead of putting one summary above them all.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SYNESIS_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libsynesis-tunnel1)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
string(CONCAT CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "persistent mutually authenticated QUIC tunnel on a libev loop (library)\n"
    "synesis-tunnel keeps a low-latency, mutually authenticated QUIC tunnel from a\n"
    "device's agent to a cloud edge, as one opaque handle on the caller's libev loop.\n"
    "OpenSSL 3.5 and ngtcp2 are linked in with their symbols hidden; the library\n"
    "exports only synesis_*.")
# A shlibs file for packages built against the library (only libsynesis-tunnel1 has a shared
# object); CPackDeb adds ldconfig to its postinst and postrm.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libsynesis-tunnel-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The static library and the CMake package need libev's and cJSON's development files (the
# CMake file finds cJSON through pkg-config).
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libsynesis-tunnel1 (= ${PROJECT_VERSION}), libev-dev, libcjson-dev, pkg-config")
string(CONCAT CPACK_DEBIAN_DEV_DESCRIPTION
    "persistent mutually authenticated QUIC tunnel on a libev loop (development)\n"
    "Headers (synesis/*.h), the static library libsynesis_tunnel.a (one pre-linked\n"
    "object carrying the OpenSSL and ngtcp2 it uses, symbols localised), pkg-config\n"
    "and CMake package files (find_package(synesis_tunnel)).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME synesis-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_TOOLS_PACKAGE_SUGGESTS "systemd")
string(CONCAT CPACK_DEBIAN_TOOLS_DESCRIPTION
    "synesis-tunnel device agent and reference edge (synesis command, services)\n"
    "The synesis command: init (device identity), agent (keeps the tunnel up),\n"
    "request (one request), edge (the reference edge server); systemd units\n"
    "synesis-agent and synesis-edge, hardened, running as the user synesis;\n"
    "configuration in /etc/synesis.")
set(SYNESIS_CONFDIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/synesis)
configure_file(${PROJECT_SOURCE_DIR}/cmake/debian/conffiles.in
               ${PROJECT_BINARY_DIR}/debian/synesis-tools/conffiles @ONLY)
foreach(script postinst prerm postrm)
  file(COPY ${PROJECT_SOURCE_DIR}/cmake/debian/${script}
       DESTINATION ${PROJECT_BINARY_DIR}/debian/synesis-tools
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ
                        WORLD_EXECUTE)
endforeach()
set(CPACK_DEBIAN_TOOLS_PACKAGE_CONTROL_EXTRA
    "${PROJECT_BINARY_DIR}/debian/synesis-tools/conffiles;${PROJECT_BINARY_DIR}/debian/synesis-tools/postinst;${PROJECT_BINARY_DIR}/debian/synesis-tools/prerm;${PROJECT_BINARY_DIR}/debian/synesis-tools/postrm")

# Each package carries the licence as Debian wants it.
foreach(pkg libsynesis-tunnel1:runtime libsynesis-tunnel-dev:dev synesis-tools:tools)
  string(REPLACE ":" ";" pkg "${pkg}")
  list(GET pkg 0 name)
  list(GET pkg 1 component)
  install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${name}
          RENAME copyright COMPONENT ${component})
endforeach()

# The source tarball: the tree without build directories, VCS data or editor files.
set(CPACK_SOURCE_GENERATOR TXZ)
set(CPACK_SOURCE_PACKAGE_FILE_NAME synesis-tunnel-${PROJECT_VERSION})
set(CPACK_SOURCE_IGNORE_FILES
    "^${PROJECT_SOURCE_DIR}/build/" "^${PROJECT_SOURCE_DIR}/out/" "^${PROJECT_SOURCE_DIR}/\\\\.git$"
    "^${PROJECT_SOURCE_DIR}/\\\\.git/" "^${PROJECT_SOURCE_DIR}/\\\\.cache/" "~$" "\\\\.swp$"
    "/compile_commands\\\\.json$")

include(CPack)
