//! What an ioctl request writes into the program and what it changes in its fd table.
//!
//! A request encoded with `_IOC` carries its direction and size in its number: `_IOC_READ`
//! ones write that many bytes at the argument. The requests that predate the encoding (terminal
//! `0x54xx`, socket `0x89xx`, file and block ones) have direction 0 in their number, though many
//! of them write: `FIONREAD` an int, `TCGETS` a termios, `SIOCGIFCONF` a length and an array
//! behind a pointer. Each is listed here with what it writes, so that replay gives the program
//! the same bytes; and the ones that change the fd's flags (`FIONBIO`, `FIOCLEX`) run at replay
//! as the `fcntl` that does the same.

/// What a request does besides its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Writes this many bytes at the argument (0: nothing, or input only).
    Writes(u32),
    /// `SIOCGIFCONF`: struct ifconf at the argument: the kernel writes `ifc_len` (an int at
    /// offset 0) and, when `ifc_buf` (a pointer at offset 8) is not NULL, `ifc_len` bytes of
    /// struct ifreq there.
    IfConf,
    /// `FIOCLEX`, `FIONCLEX`: set or clear the fd's close-on-exec flag (as `F_SETFD`).
    FdFlags,
    /// `FIONBIO`, `FIOASYNC`: set or clear a status flag of the open file (as `F_SETFL`).
    StatusFlags,
}

const IOC_READ: u64 = 2;

/// The size of a struct ifreq (a 16-byte name and a 24-byte union).
const IFREQ: u32 = 40;
/// The kernel's struct termios (TCGETS): four flag words, c_line and 19 control characters.
const TERMIOS: u32 = 36;

/// The requests before `_IOC` that write into the program, with what they write.
const LEGACY_OUT: &[(u64, u32)] = &[
    // File requests.
    (0x1, 4),    // FIBMAP: in and out, the block number
    (0x2, 4),    // FIGETBSZ
    (0x5460, 8), // FIOQSIZE: loff_t
    // Terminals.
    (0x5401, TERMIOS), // TCGETS
    (0x5405, 18),      // TCGETA: struct termio
    (0x540F, 4),       // TIOCGPGRP
    (0x5411, 4),       // TIOCOUTQ (SIOCOUTQ)
    (0x5413, 8),       // TIOCGWINSZ
    (0x5415, 4),       // TIOCMGET
    (0x5419, 4),       // TIOCGSOFTCAR
    (0x541B, 4),       // FIONREAD (SIOCINQ, TIOCINQ)
    (0x541E, 72),      // TIOCGSERIAL: struct serial_struct
    (0x5424, 4),       // TIOCGETD
    (0x5429, 4),       // TIOCGSID
    (0x542E, 32),      // TIOCGRS485: struct serial_rs485
    (0x5432, 16),      // TCGETX: struct termiox
    (0x5456, TERMIOS), // TIOCGLCKTRMIOS
    (0x545D, 80),      // TIOCGICOUNT: struct serial_icounter_struct
    // Sockets.
    (0x8904, 4),     // SIOCGPGRP
    (0x8905, 4),     // SIOCATMARK
    (0x8906, 16),    // SIOCGSTAMP: struct timeval
    (0x8907, 16),    // SIOCGSTAMPNS: struct timespec
    (0x8910, IFREQ), // SIOCGIFNAME
    (0x8913, IFREQ), // SIOCGIFFLAGS
    (0x8915, IFREQ), // SIOCGIFADDR
    (0x8917, IFREQ), // SIOCGIFDSTADDR
    (0x8919, IFREQ), // SIOCGIFBRDADDR
    (0x891B, IFREQ), // SIOCGIFNETMASK
    (0x891D, IFREQ), // SIOCGIFMETRIC
    (0x891F, IFREQ), // SIOCGIFMEM
    (0x8921, IFREQ), // SIOCGIFMTU
    (0x8927, IFREQ), // SIOCGIFHWADDR
    (0x8929, IFREQ), // SIOCGIFSLAVE
    (0x8933, IFREQ), // SIOCGIFINDEX
    (0x8935, IFREQ), // SIOCGIFPFLAGS
    (0x8942, IFREQ), // SIOCGIFTXQLEN
    (0x8947, IFREQ), // SIOCGMIIPHY
    (0x8948, IFREQ), // SIOCGMIIREG
    (0x894B, 4),     // SIOCOUTQNSD
    (0x8954, 68),    // SIOCGARP: struct arpreq
    (0x8961, 68),    // SIOCGRARP
    (0x8970, IFREQ), // SIOCGIFMAP
    // Block devices.
    (0x125E, 4), // BLKROGET
    (0x1260, 8), // BLKGETSIZE: unsigned long
    (0x1263, 8), // BLKRAGET
    (0x1265, 8), // BLKFRAGET
    (0x1267, 2), // BLKSECTGET: unsigned short
    (0x1268, 4), // BLKSSZGET
    (0x1278, 4), // BLKIOMIN
    (0x1279, 4), // BLKIOOPT
    (0x127A, 4), // BLKALIGNOFF
    (0x127B, 4), // BLKPBSZGET
    (0x127C, 4), // BLKDISCARDZEROES
    (0x127E, 2), // BLKROTATIONAL: unsigned short
];

pub const SIOCGIFCONF: u64 = 0x8912;
pub const FIONBIO: u64 = 0x5421;
pub const FIOASYNC: u64 = 0x5452;
pub const FIONCLEX: u64 = 0x5450;
pub const FIOCLEX: u64 = 0x5451;

/// What request `req` (ioctl's second argument) does besides its result.
pub fn effect(req: u64) -> Effect {
    // The request is an unsigned int: the upper half of the register is not part of it.
    let req = req & 0xffff_ffff;
    match req {
        SIOCGIFCONF => return Effect::IfConf,
        FIOCLEX | FIONCLEX => return Effect::FdFlags,
        FIONBIO | FIOASYNC => return Effect::StatusFlags,
        _ => {}
    }
    if let Some(&(_, n)) = LEGACY_OUT.iter().find(|(r, _)| *r == req) {
        return Effect::Writes(n);
    }
    if (req >> 30) & IOC_READ != 0 {
        Effect::Writes(((req >> 16) & 0x3fff) as u32)
    } else {
        Effect::Writes(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_requests_write_their_size_and_legacy_ones_their_listed_one() {
        // TCGETS2 = _IOR('T', 0x2A, struct termios2): 44 bytes.
        assert_eq!(effect(0x802c_542a), Effect::Writes(44));
        // TCSETS2 is _IOW: nothing written.
        assert_eq!(effect(0x402c_542b), Effect::Writes(0));
        assert_eq!(effect(libc::FIONREAD), Effect::Writes(4));
        assert_eq!(effect(libc::TCGETS), Effect::Writes(36));
        assert_eq!(effect(libc::TIOCGWINSZ), Effect::Writes(8));
        assert_eq!(effect(libc::SIOCGIFHWADDR), Effect::Writes(40));
        assert_eq!(effect(libc::SIOCGIFCONF), Effect::IfConf);
        assert_eq!(effect(libc::FIONBIO), Effect::StatusFlags);
        assert_eq!(effect(libc::FIOCLEX), Effect::FdFlags);
        // A setter writes nothing.
        assert_eq!(effect(libc::TCSETS), Effect::Writes(0));
        assert_eq!(effect(libc::SIOCSIFFLAGS), Effect::Writes(0));
        // Garbage above the int is ignored, as the kernel does.
        assert_eq!(effect(0xdead_0000_0000_541b), Effect::Writes(4));
    }

    #[test]
    fn the_table_has_each_request_once_and_the_libc_values() {
        let mut seen = std::collections::HashSet::new();
        for (r, _) in LEGACY_OUT {
            assert!(seen.insert(*r), "{r:#x} twice");
            assert_eq!((r >> 30) & 3, 0, "{r:#x} is _IOC-encoded");
        }
        assert_eq!(libc::TIOCOUTQ, 0x5411);
        assert_eq!(libc::SIOCGIFINDEX, 0x8933);
        assert_eq!(libc::FIONCLEX, FIONCLEX);
        assert_eq!(libc::FIOASYNC, FIOASYNC);
    }
}
