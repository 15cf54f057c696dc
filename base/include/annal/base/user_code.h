// Calls into code the application gave annal (projections, durability callbacks, query functions,
// a connector's callbacks). What such code throws becomes a Status here: unwinding through one of
// annal's threads would terminate the whole process.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "annal/base/status.h"

namespace annal {

// Runs `call`; if it threw, failed, naming what threw (`what()`, called only then: the apply loop
// must not build a string per event) and the exception.
template <class Call, class What>
Status call_user_code(Call&& call, What&& what) {
  try {
    std::forward<Call>(call)();
    return {};
  } catch (const std::exception& error) {
    return Status(ErrorCode::failed, std::string(what()) + " threw: " + error.what());
  } catch (...) {
    return Status(ErrorCode::failed, std::string(what()) + " threw something that is not a std::exception");
  }
}

}  // namespace annal
