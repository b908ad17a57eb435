// LS_CHECK: aborts on a broken invariant (a bug), printing file:line, the rank
// and host, and any streamed message. Expected failures return Status instead.
// Thread-safe.
#pragma once

#include <sstream>

namespace lockstep::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `LS_CHECK(x) << "msg"` compile to nothing when x holds.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace lockstep::internal

#define LS_CHECK(condition)                 \
  (condition) ? (void)0                     \
              : ::lockstep::internal::Voidify() & \
                    ::lockstep::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define LS_CHECK_OP(a, op, b) LS_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define LS_CHECK_EQ(a, b) LS_CHECK_OP(a, ==, b)
#define LS_CHECK_NE(a, b) LS_CHECK_OP(a, !=, b)
#define LS_CHECK_LT(a, b) LS_CHECK_OP(a, <, b)
#define LS_CHECK_LE(a, b) LS_CHECK_OP(a, <=, b)
#define LS_CHECK_GT(a, b) LS_CHECK_OP(a, >, b)
#define LS_CHECK_GE(a, b) LS_CHECK_OP(a, >=, b)

// Aborts unconditionally: unreachable code.
#define LS_FATAL() ::lockstep::internal::CheckFailure(__FILE__, __LINE__, "unreachable").stream()
