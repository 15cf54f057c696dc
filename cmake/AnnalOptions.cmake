# Warnings and sanitizers for annal's own targets. Applied per target (annal_target_defaults) so that
# a project embedding annal through add_subdirectory keeps its own flags.

set(ANNAL_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual)
# GCC 12 at -O2/-O3 warns that `"text" + std::to_string(n)` may overlap in a memcpy of ~2^63 bytes
# (libstdc++'s string insert inlined; GCC bug 105329, the same report in many projects): with
# -Werror the release build of the tests failed on code that does nothing wrong.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  list(APPEND ANNAL_WARNING_FLAGS -Wno-restrict)
endif()
if(ANNAL_WERROR)
  list(APPEND ANNAL_WARNING_FLAGS -Werror)
endif()

set(ANNAL_SANITIZER_FLAGS "")
if(ANNAL_SANITIZE)
  set(ANNAL_SANITIZER_FLAGS -fsanitize=${ANNAL_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  # Sanitizers must cover every object linked into a test, GoogleTest's own headers included.
  add_compile_options(${ANNAL_SANITIZER_FLAGS})
  add_link_options(${ANNAL_SANITIZER_FLAGS})
  if(ANNAL_SANITIZE MATCHES "thread")
    # TSan does not model standalone fences and GCC warns about each. The fences in
    # BlockingWaitStrategy only prevent lost wake-ups; data always passes through acquire/release
    # sequences, which TSan does check.
    list(APPEND ANNAL_WARNING_FLAGS -Wno-tsan)
  endif()
endif()

function(annal_target_defaults target)
  target_compile_options(${target} PRIVATE ${ANNAL_WARNING_FLAGS})
endfunction()

# annal_component(NAME SOURCES ... [PUBLIC deps...] [PRIVATE deps...]): the static library
# annal_NAME (alias annal::NAME) with public headers in NAME/include/annal/NAME/, sources and
# private headers in NAME/src/, installed and exported under the name NAME.
function(annal_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  add_library(annal_${name} STATIC ${ARG_SOURCES})
  add_library(annal::${name} ALIAS annal_${name})
  set_target_properties(annal_${name} PROPERTIES EXPORT_NAME ${name} POSITION_INDEPENDENT_CODE ON)
  target_include_directories(annal_${name}
    PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE src)
  target_compile_features(annal_${name} PUBLIC cxx_std_20)
  target_link_libraries(annal_${name} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
  annal_target_defaults(annal_${name})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
