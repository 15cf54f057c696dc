# `cmake --install` lays out headers, libraries and an exported CMake package, so that a user's
# project does find_package(annal CONFIG REQUIRED) and links annal::annal (or annal::ringbuf ...).

include(CMakePackageConfigHelpers)

install(TARGETS annal annal_base annal_crypto annal_ringbuf annal_journal annal_snapshots annal_engine
  EXPORT annalTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(ANNAL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/annal)
install(EXPORT annalTargets NAMESPACE annal:: DESTINATION ${ANNAL_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/annalConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/annalConfig.cmake
  INSTALL_DESTINATION ${ANNAL_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/annalConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/annalConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/annalConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/FindIPSecMB.cmake
  DESTINATION ${ANNAL_CMAKE_DIR})
