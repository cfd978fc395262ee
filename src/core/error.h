// Errors and checks. One exception type carries the failing statement, file and line; the CLI decides how
// the process ends (clean exit with a message, or MPI_Abort so that no rank hangs).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace msa {

// Thrown for every fatal problem. `what()` is the message the user sees.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// A problem with the user's input (config, CLI arguments, data files). Exit code 2, no stack of internals.
class UserError : public Error {
 public:
  explicit UserError(const std::string& msg) : Error(msg) {}
};

namespace detail {
[[noreturn]] inline void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << msg << " [check `" << expr << "` failed at " << file << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

}  // namespace msa

// MSA_CHECK(cond, stream-expression): internal invariant; throws msa::Error naming the statement and place.
#define MSA_CHECK(cond, ...)                                                       \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::ostringstream msa_check_os_;                                            \
      msa_check_os_ << __VA_ARGS__;                                                \
      ::msa::detail::check_failed(#cond, __FILE__, __LINE__, msa_check_os_.str()); \
    }                                                                              \
  } while (0)

// MSA_USER_CHECK(cond, stream-expression): bad input from the user; throws msa::UserError with the message.
#define MSA_USER_CHECK(cond, ...)                \
  do {                                           \
    if (!(cond)) {                               \
      std::ostringstream msa_check_os_;          \
      msa_check_os_ << __VA_ARGS__;              \
      throw ::msa::UserError(msa_check_os_.str()); \
    }                                            \
  } while (0)
