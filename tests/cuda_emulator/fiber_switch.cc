#include "tests/cuda_emulator/fiber_switch.h"

#include <cstdint>
#include <cstring>

#if !defined(__x86_64__)
#error "lsemu's fiber switch is written for x86-64"
#endif

// Pushes rbp rbx r12-r15 and an 8-byte slot with MXCSR (low half) and the x87 control
// word, stores rsp, loads the other rsp and undoes the same steps in reverse.
asm(R"(
    .text
    .globl lsemu_fiber_switch
    .type lsemu_fiber_switch, @function
lsemu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size lsemu_fiber_switch, .-lsemu_fiber_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

namespace lsemu {

void* PrepareFiberStack(char* base, size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t{15};
  // entry's return-address slot at top - 8 (never used) and the address `ret` jumps
  // to at top - 16, 16-byte aligned, so entry starts with rsp = 8 mod 16 as after a call.
  auto* slots = reinterpret_cast<uint64_t*>(top - 16);
  slots[1] = 0;
  slots[0] = reinterpret_cast<uint64_t>(entry);
  // Below it: rbp rbx r12 r13 r14 r15 (zero) and the MXCSR / control-word slot.
  uint64_t* sp = slots - 7;
  std::memset(sp, 0, 7 * sizeof(uint64_t));
  uint32_t mxcsr;
  uint16_t control_word;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(control_word));
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &control_word, 2);
  return sp;
}

}  // namespace lsemu
