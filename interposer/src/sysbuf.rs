//! The syscall buffer in the tracee (layout and rationale: [`ft_libos::sysbuf`]).
//!
//! - the handler, machine code assembled into ftexec (`global_asm!` below) and copied into the
//!   code region at [`HANDLER_ADDR`] when the clock page is installed; it has no relocations;
//! - [`plan`]: whether a syscall site can jump to a trampoline, and the trampoline's bytes;
//! - [`drain`], [`set_fd`], [`set_word`]: the tracer's side of the ring.
//!
//! A rewritten site: the `syscall` instruction and the straight-line instructions after it, 5
//! bytes or more, become `jmp rel32` to a trampoline in a page within 2 GiB (see [`plan`]).

use crate::tracee::{Running, Stopped};
use crate::{Result, TraceError};
use ft_libos::clock::{CODE_ADDR, COUNT as CLOCK_COUNT, DATA_ADDR as CLOCK_DATA};
use ft_libos::sysbuf::{
    ADDR, ENTRY_HEADER, E_ARGS, E_CLOCKS, E_DATA_LEN, E_LEN, E_NR, E_RET, FDS, FD_EPOLL, FD_LIMIT, FD_QUEUE, FD_RECV,
    FD_SEND, MAX_DATA, MAX_PAGES, MODE, MODE_RECORD, MODE_REPLAY, PAGES, PAGE_LEN, PAUSE, RING_LEN, RING_OFFSET, RPOS,
    SITE_LEN, TRAMP_LEN, USED,
};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};

/// Where the handler is copied in the code region.
pub const HANDLER_ADDR: u64 = CODE_ADDR + 0x1000;

// The handler. Called from a trampoline with the program's syscall registers (rax = number,
// rdi, rsi, rdx, r10, r8, r9), it returns with rax = the result, r11 = the program's flags
// (as `syscall` leaves it), the flags restored and every other register as it was, except
// rcx (the trampoline sets it); or, falling back, goes to the trampoline's own `syscall`. Stack after the 13 saves: r15 +0, r14 +8, r13 +16, r12 +24,
// rbx +32, r9 +40, r8 +48, r10 +56, rdx +64, rsi +72, rdi +80, rax +88, flags +96. Inside:
// rbx = the buffer region, r12 = ring bytes used, r13 = the data to copy, r14 its length, r15
// the result. Allowed syscalls go through the clock stub's `syscall; ret` at CODE_ADDR
// (`call rcx`); the fallback's own `syscall` is traced, with the program's registers.
std::arch::global_asm!(
    // The program's registers back from the saves (all but rax and the flags).
    ".macro ftexec_sb_restore",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop r9",
    "    pop r8",
    "    pop r10",
    "    pop rdx",
    "    pop rsi",
    "    pop rdi",
    ".endm",
    // Falls back unless an entry with rdx bytes of data fits the ring (r12 bytes used).
    ".macro ftexec_sb_room",
    "    cmp rdx, {max_data}",
    "    ja .Lsb_fallback",
    "    lea rcx, [rdx + {entry_header} + 7]",
    "    and rcx, -8",
    "    mov r14d, {ring_len}",
    "    sub r14, r12",
    "    cmp rcx, r14",
    "    ja .Lsb_fallback",
    ".endm",
    // Writes an entry's header at the ring's end (r12 bytes used; r14 bytes of data; result
    // r15), advances r12 past the entry, leaves rdi at its data. Expands where the 13 saves
    // are at rsp.
    ".macro ftexec_sb_header",
    "    lea rdi, [rbx + r12 + {ring}]",
    "    mov rax, qword ptr [rsp + 88]",
    "    mov dword ptr [rdi + {e_nr}], eax",
    "    lea rcx, [r14 + {entry_header} + 7]",
    "    and rcx, -8",
    "    mov dword ptr [rdi + {e_len}], ecx",
    "    add r12, rcx",
    "    mov rax, qword ptr [rsp + 80]",
    "    mov qword ptr [rdi + {e_args}], rax",
    "    mov rax, qword ptr [rsp + 72]",
    "    mov qword ptr [rdi + {e_args} + 8], rax",
    "    mov rax, qword ptr [rsp + 64]",
    "    mov qword ptr [rdi + {e_args} + 16], rax",
    "    mov rax, qword ptr [rsp + 56]",
    "    mov qword ptr [rdi + {e_args} + 24], rax",
    "    mov rax, qword ptr [rsp + 48]",
    "    mov qword ptr [rdi + {e_args} + 32], rax",
    "    mov rax, qword ptr [rsp + 40]",
    "    mov qword ptr [rdi + {e_args} + 40], rax",
    "    mov qword ptr [rdi + {e_ret}], r15",
    "    movabs rax, {clock_data}",
    "    mov eax, dword ptr [rax + {clock_count}]",
    "    mov dword ptr [rdi + {e_clocks}], eax",
    "    mov dword ptr [rdi + {e_data_len}], r14d",
    "    add rdi, {entry_header}",
    ".endm",
    // The iovecs of a writev or sendmsg (its struct msghdr: msg_iov at +16, msg_iovlen at
    // +24): their address into \ptr, their count into \cnt. Expands where the 13 saves are at
    // rsp.
    ".macro ftexec_sb_iov ptr, cnt",
    "    mov \\ptr, qword ptr [rsp + 72]",
    "    mov \\cnt, qword ptr [rsp + 64]",
    "    cmp dword ptr [rsp + 88], {nr_sendmsg}",
    "    jne 2f",
    "    mov \\cnt, qword ptr [\\ptr + 24]",
    "    mov \\ptr, qword ptr [\\ptr + 16]",
    "2:",
    ".endm",
    ".pushsection .text.ftexec_sysbuf,\"ax\",@progbits",
    ".p2align 4",
    ".globl ftexec_sysbuf_start",
    "ftexec_sysbuf_start:",
    "    pushfq",
    "    push rax",
    "    push rdi",
    "    push rsi",
    "    push rdx",
    "    push r10",
    "    push r8",
    "    push r9",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    cld",
    "    movabs rbx, {base}",
    "    cmp dword ptr [rbx + {mode}], {replay}",
    "    je .Lsb_replay",
    "    cmp dword ptr [rbx + {mode}], {record}",
    "    jne .Lsb_fallback",
    "    cmp dword ptr [rbx + {pause}], 0",
    "    jne .Lsb_fallback",
    "    mov r12d, dword ptr [rbx + {used}]",
    "    cmp rax, {nr_poll}",
    "    je .Lsb_poll",
    "    cmp rdi, {fd_limit}",
    "    jae .Lsb_fallback",
    "    movzx r13d, byte ptr [rbx + rdi + {fds}]",
    "    cmp rax, {nr_read}",
    "    je .Lsb_read",
    "    cmp rax, {nr_recvfrom}",
    "    je .Lsb_recvfrom",
    "    cmp rax, {nr_write}",
    "    je .Lsb_write",
    "    cmp rax, {nr_sendto}",
    "    je .Lsb_sendto",
    "    cmp rax, {nr_epoll_wait}",
    "    je .Lsb_epoll",
    "    cmp rax, {nr_epoll_pwait}",
    "    je .Lsb_epoll_pwait",
    "    cmp rax, {nr_writev}",
    "    je .Lsb_writev",
    "    cmp rax, {nr_sendmsg}",
    "    je .Lsb_sendmsg",
    "    jmp .Lsb_fallback",
    // read / recvfrom without a source address: recvfrom with MSG_DONTWAIT.
    ".Lsb_recvfrom:",
    "    test r8, r8",
    "    jnz .Lsb_fallback",
    "    mov r15, r10",
    "    mov rcx, r10",
    "    and rcx, {recv_other}",
    "    jnz .Lsb_fallback",
    "    jmp .Lsb_recv",
    ".Lsb_read:",
    "    xor r15d, r15d",
    ".Lsb_recv:",
    "    test r13b, {fd_recv}",
    "    jz .Lsb_fallback",
    "    ftexec_sb_room",
    "    mov r10, r15",
    "    or r10, {dontwait}",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    mov eax, {nr_recvfrom}",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    mov r10, qword ptr [rsp + 56]",
    "    mov r8, qword ptr [rsp + 48]",
    "    mov r9, qword ptr [rsp + 40]",
    "    cmp rax, {eagain}",
    "    jne .Lsb_recv_done",
    "    test r15d, {dontwait}",
    "    jnz .Lsb_recv_done",
    "    call .Lsb_nonblocking",
    "    mov rax, {eagain}",
    ".Lsb_recv_done:",
    "    mov r15, rax",
    "    mov r13, rsi",
    "    xor r14d, r14d",
    "    test rax, rax",
    "    cmovg r14, rax",
    "    jmp .Lsb_append",
    // write / sendto without a destination.
    ".Lsb_sendto:",
    "    test r8, r8",
    "    jnz .Lsb_fallback",
    "    mov r15, r10",
    "    mov rcx, r10",
    "    and rcx, {send_other}",
    "    jnz .Lsb_fallback",
    "    jmp .Lsb_send",
    ".Lsb_write:",
    "    xor r15d, r15d",
    ".Lsb_send:",
    "    ftexec_sb_room",
    "    test r13b, {fd_queue}",
    "    jnz .Lsb_queue",
    "    test r13b, {fd_send}",
    "    jz .Lsb_fallback",
    "    test r15d, {dontwait}",
    "    jnz .Lsb_send_now",
    "    call .Lsb_nonblocking",
    ".Lsb_send_now:",
    "    mov r10, r15",
    "    or r10, {dontwait_nosignal}",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    mov eax, {nr_sendto}",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    mov r10, qword ptr [rsp + 56]",
    "    mov r8, qword ptr [rsp + 48]",
    "    mov r9, qword ptr [rsp + 40]",
    // A broken connection: the program meets EPIPE (and SIGPIPE) in its own syscall; a bad
    // buffer: EFAULT there (nothing was sent either way).
    "    cmp rax, {epipe}",
    "    je .Lsb_fallback",
    "    cmp rax, {efault}",
    "    je .Lsb_fallback",
    "    mov r15, rax",
    "    mov r13, rsi",
    "    mov r14, rdx",
    "    jmp .Lsb_append",
    // The reply waits for its commit: kept in the ring, queued by the recorder at the drain.
    ".Lsb_queue:",
    "    mov r15, rdx",
    "    mov r13, rsi",
    "    mov r14, rdx",
    "    jmp .Lsb_append",
    // sendmsg without a destination or control data, of the flags send takes: as writev,
    // over its iovecs, with its flags.
    ".Lsb_sendmsg:",
    "    test rdx, {send_other}",
    "    jnz .Lsb_fallback",
    "    cmp qword ptr [rsi + 40], 0",
    "    jne .Lsb_fallback",
    "    cmp qword ptr [rsi], 0",
    "    je .Lsb_writev",
    "    cmp dword ptr [rsi + 8], 0",
    "    jne .Lsb_fallback",
    // writev (or sendmsg) of 1 to 64 buffers: gathered into the entry; sent with sendmsg
    // (MSG_DONTWAIT | MSG_NOSIGNAL and sendmsg's flags) on a non-blocking socket, or kept for
    // release. r8-r10 are scratch here: the exit restores them.
    ".Lsb_writev:",
    "    test r13b, {fd_queue} | {fd_send}",
    "    jz .Lsb_fallback",
    "    ftexec_sb_iov r8, rdx",
    "    lea rcx, [rdx - 1]",
    "    cmp rcx, 63",
    "    ja .Lsb_fallback",
    "    xor r14d, r14d",
    "    xor r9d, r9d",
    ".Lwv_sum:",
    "    mov r10, r9",
    "    shl r10, 4",
    "    add r14, qword ptr [r8 + r10 + 8]",
    "    jc .Lsb_fallback",
    "    inc r9d",
    "    cmp r9d, edx",
    "    jb .Lwv_sum",
    "    mov r15, r14",
    "    mov rdx, r14",
    "    ftexec_sb_room",
    "    mov r14, r15",
    "    test r13b, {fd_queue}",
    "    jnz .Lwv_gather",
    "    call .Lsb_nonblocking",
    "    xor r10d, r10d",
    "    cmp dword ptr [rsp + 88], {nr_sendmsg}",
    "    jne 2f",
    "    mov r10, qword ptr [rsp + 64]",
    "2:",
    "    ftexec_sb_iov r8, r9",
    "    sub rsp, 64",
    "    mov qword ptr [rsp], 0",
    "    mov qword ptr [rsp + 8], 0",
    "    mov qword ptr [rsp + 16], r8",
    "    mov qword ptr [rsp + 24], r9",
    "    mov qword ptr [rsp + 32], 0",
    "    mov qword ptr [rsp + 40], 0",
    "    mov qword ptr [rsp + 48], 0",
    "    mov rsi, rsp",
    "    mov rdx, r10",
    "    or edx, {dontwait_nosignal}",
    "    mov eax, {nr_sendmsg}",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    add rsp, 64",
    "    mov rsi, qword ptr [rsp + 72]",
    "    mov rdx, qword ptr [rsp + 64]",
    "    cmp rax, {epipe}",
    "    je .Lsb_fallback",
    "    cmp rax, {efault}",
    "    je .Lsb_fallback",
    "    mov r15, rax",
    ".Lwv_gather:",
    "    ftexec_sb_header",
    "    ftexec_sb_iov r8, rdx",
    "    xor r9d, r9d",
    ".Lwv_copy:",
    "    mov r10, r9",
    "    shl r10, 4",
    "    mov rsi, qword ptr [r8 + r10]",
    "    mov rcx, qword ptr [r8 + r10 + 8]",
    "    rep movsb",
    "    inc r9d",
    "    cmp r9d, edx",
    "    jb .Lwv_copy",
    "    jmp .Lsb_commit",
    // poll of 1 to 64 fds (no fd approval: its result is the revents it writes and its
    // count): with timeout 0; nothing ready and a program that would wait: its own syscall.
    ".Lsb_poll:",
    "    lea rcx, [rsi - 1]",
    "    cmp rcx, 63",
    "    ja .Lsb_fallback",
    "    lea rdx, [rsi * 8]",
    "    ftexec_sb_room",
    "    mov rdx, qword ptr [rsp + 64]",
    "    mov eax, {nr_poll}",
    "    xor edx, edx",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    mov rdx, qword ptr [rsp + 64]",
    "    test rax, rax",
    "    js .Lsb_fallback",
    "    jnz .Lsb_poll_got",
    "    test edx, edx",
    "    jnz .Lsb_fallback",
    ".Lsb_poll_got:",
    "    mov r15, rax",
    "    mov r13, rdi",
    "    lea r14, [rsi * 8]",
    "    jmp .Lsb_append",
    // epoll_wait / epoll_pwait without a signal mask: with timeout 0; nothing ready and a
    // program that would wait: its own syscall.
    ".Lsb_epoll_pwait:",
    "    test r8, r8",
    "    jnz .Lsb_fallback",
    ".Lsb_epoll:",
    "    test r13b, {fd_epoll}",
    "    jz .Lsb_fallback",
    // At most min(max, 4096, what the ring's room holds) events: epoll_wait may return fewer
    // than are ready, and none may be taken that the ring cannot keep.
    "    cmp edx, 1",
    "    jl .Lsb_fallback",
    "    mov r15d, {ring_len} - {entry_header} - 8",
    "    sub r15, r12",
    "    jbe .Lsb_fallback",
    "    mov eax, r15d",
    "    xor edx, edx",
    "    mov ecx, 12",
    "    div ecx",
    "    mov rdx, qword ptr [rsp + 64]",
    "    cmp eax, 4096",
    "    mov ecx, 4096",
    "    cmova eax, ecx",
    "    cmp eax, edx",
    "    cmovg eax, edx",
    "    test eax, eax",
    "    jz .Lsb_fallback",
    "    mov edx, eax",
    "    xor r10d, r10d",
    "    mov eax, {nr_epoll_wait}",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    mov r10, qword ptr [rsp + 56]",
    "    mov rdx, qword ptr [rsp + 64]",
    "    test rax, rax",
    "    js .Lsb_fallback",
    "    jnz .Lsb_epoll_got",
    "    test r10d, r10d",
    "    jnz .Lsb_fallback",
    ".Lsb_epoll_got:",
    "    mov r15, rax",
    "    mov r13, rsi",
    "    imul r14d, eax, 12",
    "    jmp .Lsb_append",
    // Returns if fd rdi is non-blocking; otherwise drops its return address and takes the
    // fallback (a blocking call must wait in the kernel, traced).
    ".Lsb_nonblocking:",
    "    mov eax, {nr_fcntl}",
    "    mov esi, {f_getfl}",
    "    movabs rcx, {sys}",
    "    call rcx",
    "    mov rsi, qword ptr [rsp + 8 + 72]",
    "    test rax, rax",
    "    js .Lsb_drop_fallback",
    "    test eax, {o_nonblock}",
    "    jz .Lsb_drop_fallback",
    "    ret",
    ".Lsb_drop_fallback:",
    "    add rsp, 8",
    "    jmp .Lsb_fallback",
    // Appends the entry and commits it (USED last: a stop before that drains nothing of it).
    ".Lsb_append:",
    "    ftexec_sb_header",
    "    mov rsi, r13",
    "    mov rcx, r14",
    "    rep movsb",
    ".Lsb_commit:",
    "    mov dword ptr [rbx + {used}], r12d",
    // The call's result (r15) to the program, with its registers and flags (r11 as `syscall`
    // leaves it).
    ".Lsb_return:",
    "    mov rax, r15",
    "    ftexec_sb_restore",
    "    add rsp, 8",
    "    mov r11, qword ptr [rsp]",
    "    popfq",
    "    ret",
    // Replay: the next entry, if it is this call (number, fd, buffer, length; the flags, timeout
    // and address or mask where the call has them): its bytes into the program's buffer (a read's, epoll's events), or the
    // program's bytes into the entry (a write's, checked by the replayer at the next stop).
    // Otherwise, or with the ring served, the program's own syscall, traced.
    ".Lsb_replay:",
    "    mov r12d, dword ptr [rbx + {rpos}]",
    "    cmp r12d, dword ptr [rbx + {used}]",
    "    jae .Lsb_fallback",
    "    lea r13, [rbx + r12 + {ring}]",
    "    cmp eax, dword ptr [r13 + {e_nr}]",
    "    jne .Lsb_fallback",
    "    cmp rdi, qword ptr [r13 + {e_args}]",
    "    jne .Lsb_fallback",
    "    cmp rsi, qword ptr [r13 + {e_args} + 8]",
    "    jne .Lsb_fallback",
    "    cmp rdx, qword ptr [r13 + {e_args} + 16]",
    "    jne .Lsb_fallback",
    // The flags of recvfrom and sendto, the timeout of epoll; their address or mask (r8).
    "    cmp rax, {nr_read}",
    "    je .Lsb_replay_match",
    "    cmp rax, {nr_write}",
    "    je .Lsb_replay_match",
    "    cmp rax, {nr_writev}",
    "    je .Lsb_replay_match",
    "    cmp rax, {nr_sendmsg}",
    "    je .Lsb_replay_match",
    "    cmp rax, {nr_poll}",
    "    je .Lsb_replay_match",
    "    cmp r10, qword ptr [r13 + {e_args} + 24]",
    "    jne .Lsb_fallback",
    "    cmp rax, {nr_epoll_wait}",
    "    je .Lsb_replay_match",
    "    cmp r8, qword ptr [r13 + {e_args} + 32]",
    "    jne .Lsb_fallback",
    ".Lsb_replay_match:",
    "    mov ecx, dword ptr [r13 + {e_data_len}]",
    "    lea r14, [r13 + {entry_header}]",
    "    cmp rax, {nr_write}",
    "    je .Lsb_replay_write",
    "    cmp rax, {nr_sendto}",
    "    je .Lsb_replay_write",
    "    cmp rax, {nr_writev}",
    "    je .Lsb_replay_writev",
    "    cmp rax, {nr_sendmsg}",
    "    je .Lsb_replay_sendmsg",
    "    cmp rax, {nr_poll}",
    "    je .Lsb_replay_poll",
    "    mov rdi, rsi",
    "    mov rsi, r14",
    "    rep movsb",
    "    jmp .Lsb_replay_done",
    ".Lsb_replay_write:",
    "    mov rdi, r14",
    "    rep movsb",
    "    jmp .Lsb_replay_done",
    // poll: the program asks about the same fds and events as at record; their revents.
    ".Lsb_replay_poll:",
    "    lea r9, [rsi * 8]",
    "    cmp r9, rcx",
    "    jne .Lsb_fallback",
    "    xor r9d, r9d",
    ".Lrp_check:",
    "    mov r10d, dword ptr [rdi + r9]",
    "    cmp r10d, dword ptr [r14 + r9]",
    "    jne .Lsb_fallback",
    "    mov r10w, word ptr [rdi + r9 + 4]",
    "    cmp r10w, word ptr [r14 + r9 + 4]",
    "    jne .Lsb_fallback",
    "    add r9, 8",
    "    cmp r9, rcx",
    "    jb .Lrp_check",
    "    mov rsi, r14",
    "    rep movsb",
    "    jmp .Lsb_replay_done",
    // sendmsg: still without a destination or control data; then as writev, over its iovecs.
    ".Lsb_replay_sendmsg:",
    "    cmp qword ptr [rsi + 40], 0",
    "    jne .Lsb_fallback",
    "    cmp qword ptr [rsi], 0",
    "    je 2f",
    "    cmp dword ptr [rsi + 8], 0",
    "    jne .Lsb_fallback",
    "2:",
    "    mov rdx, qword ptr [rsi + 24]",
    "    mov rsi, qword ptr [rsi + 16]",
    "    lea r9, [rdx - 1]",
    "    cmp r9, 63",
    "    ja .Lsb_fallback",
    // writev: the buffers must hold as many bytes as the recording's; gathered into the entry.
    ".Lsb_replay_writev:",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    ".Lrw_sum:",
    "    mov r11, r9",
    "    shl r11, 4",
    "    add r10, qword ptr [rsi + r11 + 8]",
    "    jc .Lsb_fallback",
    "    inc r9d",
    "    cmp r9d, edx",
    "    jb .Lrw_sum",
    "    cmp r10, rcx",
    "    jne .Lsb_fallback",
    "    mov rdi, r14",
    "    mov r8, rsi",
    "    xor r9d, r9d",
    ".Lrw_copy:",
    "    mov r11, r9",
    "    shl r11, 4",
    "    mov rsi, qword ptr [r8 + r11]",
    "    mov rcx, qword ptr [r8 + r11 + 8]",
    "    rep movsb",
    "    inc r9d",
    "    cmp r9d, edx",
    "    jb .Lrw_copy",
    ".Lsb_replay_done:",
    "    mov r15, qword ptr [r13 + {e_ret}]",
    "    mov ecx, dword ptr [r13 + {e_len}]",
    "    add r12d, ecx",
    "    mov dword ptr [rbx + {rpos}], r12d",
    "    jmp .Lsb_return",
    // The program's own syscall, traced: every register, the flags and the stack as they
    // were at the site, then the trampoline's copy of `syscall` (10 bytes after the return
    // address; see `plan`), so that a clone with a new stack, a vfork or a signal frame finds
    // the program's stack, not the handler's frame.
    ".Lsb_fallback:",
    "    ftexec_sb_restore",
    "    pop rax",
    "    popfq",
    "    pop r11",
    "    lea rsp, [rsp + 128]",
    "    lea r11, [r11 + 10]",
    "    jmp r11",
    ".globl ftexec_sysbuf_end",
    "ftexec_sysbuf_end:",
    ".popsection",
    base = const ADDR,
    mode = const MODE,
    record = const MODE_RECORD,
    replay = const MODE_REPLAY,
    rpos = const RPOS,
    pause = const PAUSE,
    used = const USED,
    fds = const FDS,
    fd_limit = const FD_LIMIT,
    ring = const RING_OFFSET,
    ring_len = const RING_LEN,
    max_data = const MAX_DATA,
    entry_header = const ENTRY_HEADER,
    e_nr = const E_NR,
    e_len = const E_LEN,
    e_args = const E_ARGS,
    e_ret = const E_RET,
    e_clocks = const E_CLOCKS,
    e_data_len = const E_DATA_LEN,
    fd_recv = const FD_RECV,
    fd_send = const FD_SEND,
    fd_queue = const FD_QUEUE,
    fd_epoll = const FD_EPOLL,
    sys = const CODE_ADDR,
    clock_data = const CLOCK_DATA,
    clock_count = const CLOCK_COUNT,
    dontwait = const libc::MSG_DONTWAIT,
    dontwait_nosignal = const libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
    recv_other = const !((libc::MSG_DONTWAIT | libc::MSG_PEEK) as i64),
    send_other = const !((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE) as i64),
    eagain = const -(libc::EAGAIN as i64),
    epipe = const -(libc::EPIPE as i64),
    efault = const -(libc::EFAULT as i64),
    f_getfl = const libc::F_GETFL,
    o_nonblock = const libc::O_NONBLOCK,
    nr_read = const libc::SYS_read,
    nr_write = const libc::SYS_write,
    nr_recvfrom = const libc::SYS_recvfrom,
    nr_sendto = const libc::SYS_sendto,
    nr_epoll_wait = const libc::SYS_epoll_wait,
    nr_epoll_pwait = const libc::SYS_epoll_pwait,
    nr_fcntl = const libc::SYS_fcntl,
    nr_writev = const libc::SYS_writev,
    nr_sendmsg = const libc::SYS_sendmsg,
    nr_poll = const libc::SYS_poll,
);

unsafe extern "C" {
    static ftexec_sysbuf_start: u8;
    static ftexec_sysbuf_end: u8;
}

/// The offset of the instruction after a trampoline's copy of `syscall` (where the program's
/// own syscall stops when the handler falls back), from the trampoline's start.
pub const TRAMP_RESUME: u64 = 30;

/// The handler's bytes, as copied to [`HANDLER_ADDR`].
pub fn handler() -> &'static [u8] {
    // SAFETY: start and end delimit the assembled handler in this binary's text, which is
    // mapped and readable for the life of the process.
    unsafe {
        let start = std::ptr::addr_of!(ftexec_sysbuf_start);
        let end = std::ptr::addr_of!(ftexec_sysbuf_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The syscalls the handler itself makes, untraced (see `crate::filter`).
pub const HANDLER_SYSCALLS: [i64; 6] =
    [libc::SYS_recvfrom, libc::SYS_sendto, libc::SYS_sendmsg, libc::SYS_epoll_wait, libc::SYS_fcntl, libc::SYS_poll];

/// The syscalls the handler buffers: the table's `buffered` ones.
pub fn buffers(nr: u64) -> bool {
    ft_libos::lookup(nr).is_some_and(|s| s.buffered)
}

/// A site rewrite: the trampoline's bytes (at `tramp`), the site's new bytes (at `site`), and
/// where a task stopped at the site's syscall continues (`resume`: after the trampoline's own
/// `syscall`, so that a restart rewinds onto it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub site: u64,
    pub tramp: u64,
    pub tramp_bytes: Vec<u8>,
    pub site_bytes: Vec<u8>,
    pub resume: u64,
}

/// A rel32 displacement from the end of an instruction at `from` to `to`, if in range.
fn rel32(from: u64, to: u64) -> Option<i32> {
    i32::try_from(to.wrapping_sub(from) as i64).ok()
}

/// Plans the rewrite of the syscall at `site` (the two bytes `0f 05` there), given `code`,
/// the bytes from `site` on (at least 32), with its trampoline at `tramp` (within 2 GiB). The
/// syscall and the straight-line instructions after it, 5 bytes or more, become `jmp rel32`
/// (and int3 filler); the trampoline calls the handler, leaves rcx as the kernel would, runs
/// the moved instructions and jumps back. Only instructions that neither branch nor address
/// memory relative to rip are moved: glibc's `cmp rax, -4096` after its syscalls, Go's
/// `CMPQ AX, $-4095`. The conditional branch after them stays in place, and so does the code
/// it rejoins (a branch target right after the branch is common: glibc's error paths jump
/// back there). Err says why the site stays traced.
pub fn plan(site: u64, code: &[u8], tramp: u64) -> std::result::Result<Plan, &'static str> {
    if code.get(..2) != Some(&[0x0f, 0x05][..]) {
        return Err("no syscall instruction at the site");
    }
    let mut t = Vec::with_capacity(TRAMP_LEN as usize);
    t.extend_from_slice(&[0x48, 0x8d, 0x64, 0x24, 0x80]); // lea rsp, [rsp-128]
    t.extend_from_slice(&[0x49, 0xbb]); // movabs r11, handler
    t.extend_from_slice(&HANDLER_ADDR.to_le_bytes());
    t.extend_from_slice(&[0x41, 0xff, 0xd3]); // call r11
    t.extend_from_slice(&[0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0]); // lea rsp, [rsp+128]
    t.extend_from_slice(&[0xeb, 0x02]); // jmp over the syscall
                                        // syscall: the handler's fallback (the program's own call, on its own stack), and a
                                        // restarted syscall of a task resumed here
    t.extend_from_slice(&[0x0f, 0x05]);
    let resume = tramp + t.len() as u64;
    debug_assert_eq!(resume - tramp, TRAMP_RESUME);
    t.extend_from_slice(&[0x48, 0xb9]); // movabs rcx, site + 2 (as the kernel leaves it)
    t.extend_from_slice(&(site + 2).to_le_bytes());
    let moved = code.get(2..).ok_or("short code")?;
    let mut decoder = Decoder::with_ip(64, moved, site + 2, DecoderOptions::NONE);
    let mut at = site + 2;
    while at < site + SITE_LEN as u64 {
        if !decoder.can_decode() {
            return Err("the site's code ends early");
        }
        let ins = decoder.decode();
        if ins.is_invalid() {
            return Err("undecodable instruction after the syscall");
        }
        if ins.flow_control() != FlowControl::Next {
            return Err("a branch, call or return right after the syscall");
        }
        if ins.is_ip_rel_memory_operand() {
            return Err("an instruction addressing memory relative to rip");
        }
        if matches!(ins.mnemonic(), Mnemonic::Syscall | Mnemonic::Sysenter) {
            return Err("another syscall right after the syscall");
        }
        let off = (at - site - 2) as usize;
        t.extend_from_slice(moved.get(off..off + ins.len()).ok_or("short code")?);
        at += ins.len() as u64;
    }
    let back = tramp + t.len() as u64 + 5;
    t.push(0xe9);
    t.extend_from_slice(&rel32(back, at).ok_or("the trampoline is too far from the site")?.to_le_bytes());
    if t.len() as u64 > TRAMP_LEN {
        return Err("the moved instructions do not fit a trampoline");
    }
    let mut site_bytes = vec![0xe9];
    site_bytes
        .extend_from_slice(&rel32(site + 5, tramp).ok_or("the trampoline is too far from the site")?.to_le_bytes());
    // Never executed: a branch into the moved bytes (none is expected) traps instead of
    // running the middle of the jump.
    site_bytes.resize((at - site) as usize, 0xcc);
    Ok(Plan { site, tramp, tramp_bytes: t, site_bytes, resume })
}

/// Where a new trampoline page for `site` can go: a free, 64 KiB-aligned range of `len`
/// bytes within reach of a rel32 jump, given the process's mappings (start, end), sorted.
/// Far below the site first (the program's own mappings grow down from its libraries, or up
/// from its heap, and are not to be crowded), nearer if that is taken.
pub fn page_for(site: u64, len: u64, maps: &[(u64, u64)]) -> Option<u64> {
    const ALIGN: u64 = 0x10000;
    let free = |a: u64| a >= 0x10000 && maps.iter().all(|&(s, e)| a + len <= s || a >= e);
    for back in [1u64 << 30, 1 << 28, 1 << 24, 1 << 20] {
        let Some(a) = site.checked_sub(back) else { continue };
        let a = a & !(ALIGN - 1);
        if free(a) {
            return Some(a);
        }
    }
    for ahead in [1u64 << 30, 1 << 28] {
        let a = (site + ahead) & !(ALIGN - 1);
        if a + len < 0x7fff_0000_0000 && free(a) {
            return Some(a);
        }
    }
    None
}

/// Record: the entries the handler appended since the last drain (the raw ring); resets it.
pub fn drain(t: &Stopped) -> Result<Vec<u8>> {
    let head = t.read(ADDR, 8)?;
    let used = u32::from_le_bytes([head[USED], head[USED + 1], head[USED + 2], head[USED + 3]]) as usize;
    if used == 0 {
        return Ok(Vec::new());
    }
    let ring = t.read(ADDR + RING_OFFSET as u64, used.min(RING_LEN))?;
    t.write(ADDR + USED as u64, &0u32.to_le_bytes())?;
    Ok(ring)
}

/// Sets what the handler may do with fd `fd` (bits `ft_libos::sysbuf::FD_*`).
pub fn set_fd(t: &Stopped, fd: usize, bits: u8) -> Result<()> {
    if fd < FD_LIMIT {
        t.write(ADDR + (FDS + fd) as u64, &[bits])?;
    }
    Ok(())
}

/// Writes a u32 header field (MODE, PAUSE).
pub fn set_word(t: &Stopped, field: usize, value: u32) -> Result<()> {
    t.write(ADDR + field as u64, &value.to_le_bytes())
}

/// The trampoline pages of the process, from the region's header.
pub fn pages(t: &Stopped) -> Result<Vec<u64>> {
    let b = t.read(ADDR + PAGES as u64, 8 * MAX_PAGES)?;
    Ok(b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).filter(|&a| a != 0).collect())
}

/// The first free trampoline of page `page`, if any (a free one is all zero bytes).
pub fn free_slot(t: &Stopped, page: u64) -> Result<Option<u64>> {
    let b = t.read(page, PAGE_LEN as usize)?;
    Ok(b.chunks_exact(TRAMP_LEN as usize).position(|c| c.iter().all(|&x| x == 0)).map(|i| page + i as u64 * TRAMP_LEN))
}

/// At a seccomp stop: maps a trampoline page at `addr` instead of the task's syscall, which it
/// makes again when resumed (a new stop), and notes the page in the header.
pub fn add_page(t: Stopped, addr: u64) -> Result<Running> {
    let pid = t.pid();
    let n = pages(&t)?.len();
    if n >= MAX_PAGES {
        return Err(TraceError::Unexpected { pid, what: "more trampoline pages than the header holds".into() });
    }
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let (s, ret) =
        crate::clock::inject_and_retry(t, libc::SYS_mmap as u64, [addr, PAGE_LEN, prot, flags, u64::MAX, 0])?;
    if ret as u64 != addr {
        return Err(TraceError::Unexpected {
            pid,
            what: format!(
                "mapping a trampoline page of the syscall buffer at {addr:#x} failed ({})",
                nix::Error::from_raw((-ret) as i32)
            ),
        });
    }
    s.write(ADDR + (PAGES + 8 * n) as u64, &addr.to_le_bytes())?;
    s.cont(None)
}

/// Replay: puts `ring` (encoded entries) in the ring, to be served from its start.
pub fn fill(t: &Stopped, ring: &[u8]) -> Result<()> {
    t.write(ADDR + RING_OFFSET as u64, ring)?;
    let mut h = [0u8; 16];
    h[MODE..MODE + 4].copy_from_slice(&MODE_REPLAY.to_le_bytes());
    h[USED..USED + 4].copy_from_slice(&(ring.len() as u32).to_le_bytes());
    h[RPOS..RPOS + 4].copy_from_slice(&0u32.to_le_bytes());
    t.write(ADDR, &h)
}

/// Replay: (bytes served, bytes filled) of the ring.
pub fn served(t: &Stopped) -> Result<(u32, u32)> {
    let b = t.read(ADDR, 16)?;
    let word = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok((word(RPOS), word(USED)))
}

/// The ring's first `len` bytes (replay: the entries served, writes' bytes filled in).
pub fn ring(t: &Stopped, len: usize) -> Result<Vec<u8>> {
    t.read(ADDR + RING_OFFSET as u64, len)
}

/// Record: the handler records from now on, with an empty ring.
pub fn start_recording(t: &Stopped) -> Result<()> {
    let mut h = [0u8; 16];
    h[MODE..MODE + 4].copy_from_slice(&MODE_RECORD.to_le_bytes());
    t.write(ADDR, &h)
}

/// Going live: the handler traces every call until the recorder approves fds again.
pub fn to_off(pid: nix::unistd::Pid) -> Result<()> {
    Stopped::assume_stopped(pid).write(ADDR, &[0u8; 16])
}

#[cfg(test)]
mod tests {
    use super::*;

    // glibc 2.36's epoll_wait (cancellable path): syscall; cmp rax,-4096; ja (rel8); mov
    // edi,r8d; mov [rsp+0xc],eax: its error path jumps back to the mov after the ja.
    const EPOLL: [u8; 32] = [
        0x0f, 0x05, 0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0x77, 0x32, 0x44, 0x89, 0xc7, 0x89, 0x44, 0x24, 0x0c, 0xe8,
        0x56, 0xc9, 0xf7, 0xff, 0x8b, 0x44, 0x24, 0x0c, 0x48, 0x83, 0xc4, 0x28, 0xc3, 0x90,
    ];

    #[test]
    fn glibc_site_moves_only_the_compare() {
        let site = 0x7fff_f792_6f34;
        let tramp = site - (1 << 30);
        let p = plan(site, &EPOLL, tramp).expect("plannable");
        assert_eq!(p.site_bytes.len(), 8, "syscall and cmp; the ja stays");
        assert_eq!(p.site_bytes[0], 0xe9);
        let rel = i32::from_le_bytes(p.site_bytes[1..5].try_into().expect("4 bytes"));
        assert_eq!((site + 5).wrapping_add(rel as i64 as u64), tramp);
        assert_eq!(&p.site_bytes[5..], &[0xcc; 3]);
        assert_eq!(&p.tramp_bytes[(p.resume - tramp - 2) as usize..][..2], &[0x0f, 0x05]);
        assert_eq!(p.resume - tramp, TRAMP_RESUME);
        let after = &p.tramp_bytes[(p.resume - tramp) as usize..];
        assert_eq!(&after[..2], &[0x48, 0xb9], "rcx set as the kernel would");
        assert_eq!(&after[2..10], &(site + 2).to_le_bytes());
        assert_eq!(&after[10..16], &EPOLL[2..8]);
        assert_eq!(after[16], 0xe9);
        let back = i32::from_le_bytes(after[17..21].try_into().expect("4 bytes"));
        assert_eq!((p.resume + 21).wrapping_add(back as i64 as u64), site + 8);
    }

    #[test]
    fn unsafe_sites_stay_traced() {
        let tramp = 0x1000_0000;
        // A branch right after the syscall.
        let mut ja = [0x90u8; 32];
        ja[..2].copy_from_slice(&[0x0f, 0x05]);
        ja[2..4].copy_from_slice(&[0x77, 0x10]);
        assert!(plan(0x2000_0000, &ja, tramp).is_err());
        // rip-relative memory.
        let mut rip = [0x90u8; 32];
        rip[..2].copy_from_slice(&[0x0f, 0x05]);
        rip[2..9].copy_from_slice(&[0x48, 0x8b, 0x05, 1, 0, 0, 0]);
        assert!(plan(0x2000_0000, &rip, tramp).is_err());
        // Too far for rel32.
        assert!(plan(0x7fff_f792_6f34, &EPOLL, 0x1000_0000).is_err());
        assert!(plan(0x1000, &[0x90; 32], tramp).is_err());
    }

    #[test]
    fn trampoline_pages_avoid_mappings() {
        let site = 0x7fff_f792_6f34;
        let maps = [(0x7fff_f700_0000, 0x7fff_f800_0000)];
        let a = page_for(site, 0x10000, &maps).expect("room");
        assert_eq!(a, (site - (1 << 30)) & !0xffff);
        let taken = [(a, a + 0x10000), (0x7fff_f700_0000, 0x7fff_f800_0000)];
        let b = page_for(site, 0x10000, &taken).expect("room");
        assert_ne!(a, b);
        assert!(site - b < (1 << 31));
        // A static binary at 0x400000: below it there is little room, above it plenty.
        let c = page_for(0x40_1234, 0x10000, &[(0x40_0000, 0x50_0000)]).expect("room");
        assert!(c >= 0x50_0000 || c + 0x10000 <= 0x40_0000);
    }

    #[test]
    fn the_table_names_what_the_handler_dispatches() {
        let handled = [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_poll,
            libc::SYS_writev,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
        ];
        let buffered: Vec<i64> = (0..512).filter(|&nr| buffers(nr)).map(|nr| nr as i64).collect();
        assert_eq!(buffered, handled, "the asm's dispatch and the table's Copy syscalls differ");
    }

    #[test]
    fn handler_fits_before_the_trampolines() {
        let h = handler();
        assert!(!h.is_empty());
        assert!(HANDLER_ADDR + h.len() as u64 <= CODE_ADDR + ft_libos::clock::CODE_LEN);
    }
}
