// The emulator's fiber switch: x86-64 System V, callee-saved registers plus MXCSR and
// the x87 control word, nothing else. glibc's swapcontext makes a sigprocmask system
// call per switch and, under AddressSanitizer, clears the target stack's whole shadow;
// the emulated suite switches millions of times.
#pragma once

#include <cstddef>

namespace lsemu {

// Saves the running context's stack pointer into *save and continues the context
// whose stack pointer is `load` (saved by an earlier switch, or made by
// PrepareFiberStack). Returns when something switches back.
extern "C" void lsemu_fiber_switch(void** save, void* load);

// Lays out a fresh stack [base, base + bytes) so that switching to the returned
// stack pointer calls entry() with a correctly aligned stack. entry must never return.
void* PrepareFiberStack(char* base, size_t bytes, void (*entry)());

}  // namespace lsemu
