//! Which device nodes a container's processes may open: cgroup v2's
//! device controller, a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! the container's cgroup (what runc and crun do on cgroup v2).
//!
//! Without it, root in any container whose capabilities include
//! `CAP_MKNOD` (Docker's default set has it) could make a node for the
//! state disk and read or write it raw, whatever its /dev holds. As in
//! Docker, making a node of any device is allowed (`m`: images carry
//! them, and `mknod` is how they are unpacked); reading and writing are
//! allowed only for the defaults every container gets (`null`, `zero`,
//! `full`, `random`, `urandom`, `tty`, `console`, `ptmx`, the
//! pseudo-terminals) and for the devices the spec lists. A container
//! sharing the host's /dev (privileged, `host-dev`) gets no program.
//!
//! The program is generated from the rules, checked by a small
//! interpreter in the tests, and loaded with `bpf(2)` (`sys::bpf_*`).

use std::os::fd::AsRawFd;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::{sys, Error};

/// `BPF_DEVCG_DEV_*` and `BPF_DEVCG_ACC_*` (linux/bpf.h).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
pub const ACC_MKNOD: i32 = 1;
pub const ACC_READ: i32 = 2;
pub const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One allow rule: a device type (None: both), numbers (None: any) and
/// the accesses it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub block: Option<bool>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: i32,
}

const fn chr(major: u32, minor: Option<u32>) -> Rule {
    Rule {
        block: Some(false),
        major: Some(major),
        minor,
        access: ACC_ALL,
    }
}

/// Docker's default rules, with the spec's devices after them.
pub fn container_rules(devices: &[LinuxDevice]) -> Vec<Rule> {
    let mut rules = vec![
        // mknod of anything, as Docker (`c *:* m`, `b *:* m`).
        Rule {
            block: None,
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        chr(1, Some(3)), // null
        chr(1, Some(5)), // zero
        chr(1, Some(7)), // full
        chr(1, Some(8)), // random
        chr(1, Some(9)), // urandom
        chr(5, Some(0)), // tty
        chr(5, Some(1)), // console
        chr(5, Some(2)), // ptmx
        chr(136, None),  // pts/*
    ];
    for d in devices {
        let block = match d.typ() {
            LinuxDeviceType::B => true,
            LinuxDeviceType::C | LinuxDeviceType::U => false,
            // A FIFO is no device; 'a' is not a node.
            LinuxDeviceType::P | LinuxDeviceType::A => continue,
        };
        rules.push(Rule {
            block: Some(block),
            major: u32::try_from(d.major()).ok(),
            minor: u32::try_from(d.minor()).ok(),
            access: ACC_ALL,
        });
    }
    rules
}

/// A BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The opcodes used (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm
const ALU32_MOV_K: u8 = 0xb4; // dst = imm
const ALU32_MOV_X: u8 = 0xbc; // dst = src
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JNE_X: u8 = 0x5d; // if dst != src: pc += off
const EXIT: u8 = 0x95;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program: r2 = type, r3 = access, r4 = major, r5 = minor (from
/// `struct bpf_cgroup_dev_ctx`), then each rule in turn: a match returns
/// 1 (allow); none returns 0 (deny).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block = Vec::new();
        if let Some(b) = r.block {
            block.push(insn(JNE_K, 2, 0, 0, if b { DEV_BLOCK } else { DEV_CHAR }));
        }
        // Every access asked for must be allowed: (access & allowed) == access.
        block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
        block.push(insn(ALU32_AND_K, 1, 0, 0, r.access));
        block.push(insn(JNE_X, 1, 3, 0, 0));
        if let Some(major) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        // Each jump skips to the rule's end: past the instructions after it.
        let n = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Loads the rules' program and attaches it to the cgroup directory
/// `cgroup` (kept there by the kernel until the cgroup goes, or replaced
/// by the next attach when the container starts again).
pub fn attach(cgroup: &std::path::Path, rules: &[Rule]) -> Result<(), Error> {
    let fail = |step: &str, e: nix::Error| Error::Cgroup {
        path: cgroup.to_owned(),
        source: std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!("{step}: {e} (the kernel needs CONFIG_CGROUP_BPF)"),
        ),
    };
    let insns = program(rules);
    let prog =
        sys::bpf_load_cgroup_device(&insns).map_err(|e| fail("loading the device filter", e))?;
    let dir = nix::fcntl::open(
        cgroup,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail("opening the cgroup", e))?;
    sys::bpf_attach_cgroup_device(dir.as_raw_fd(), prog.as_raw_fd())
        .map_err(|e| fail("attaching the device filter", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    /// Runs the program on one access, as the kernel would: only the
    /// instructions `program` emits.
    fn run(p: &[Insn], block: bool, access: i32, major: u32, minor: u32) -> bool {
        let ctx = [
            ((access as u32) << 16) | if block { 1 } else { 2 },
            major,
            minor,
        ];
        let mut r = [0u32; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads are from the context");
                    r[dst] = ctx[i.off as usize / 4];
                }
                ALU32_AND_K => r[dst] &= i.imm as u32,
                ALU32_RSH_K => r[dst] >>= i.imm as u32,
                ALU32_MOV_K => r[dst] = i.imm as u32,
                ALU32_MOV_X => r[dst] = r[src],
                JNE_K if r[dst] != i.imm as u32 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0] == 1,
                c => panic!("opcode {c:#x} is not one the program uses"),
            }
        }
    }

    #[test]
    fn only_the_default_devices_and_the_listed_ones_open() {
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let p = program(&container_rules(&[fuse]));
        let rw = ACC_READ | ACC_WRITE;
        // /dev/null, /dev/urandom, a pseudo-terminal, the listed fuse.
        assert!(run(&p, false, rw, 1, 3));
        assert!(run(&p, false, ACC_READ, 1, 9));
        assert!(run(&p, false, rw, 136, 7));
        assert!(run(&p, false, rw, 10, 229));
        // The state disk (virtio-blk 254:0), /dev/mem, /dev/kmsg: no.
        assert!(!run(&p, true, ACC_READ, 254, 0));
        assert!(!run(&p, true, ACC_WRITE, 254, 0));
        assert!(!run(&p, false, ACC_READ, 1, 1));
        assert!(!run(&p, false, ACC_READ, 1, 11));
        // A char rule does not let the same numbers open as a block device.
        assert!(!run(&p, true, rw, 1, 3));
        // Making any node is allowed, opening it is not.
        assert!(run(&p, true, ACC_MKNOD, 254, 0));
        assert!(!run(&p, true, ACC_MKNOD | ACC_READ, 254, 0));
    }

    /// The kernel's verifier accepts the program (the tests run as root,
    /// as `make test` does).
    #[test]
    fn the_kernel_loads_the_program() {
        let p = program(&container_rules(&[]));
        if let Err(e) = crate::sys::bpf_load_cgroup_device(&p) {
            panic!("bpf(BPF_PROG_LOAD) of the device filter: {e}");
        }
    }

    #[test]
    fn no_rules_deny_everything() {
        let p = program(&[]);
        assert!(!run(&p, false, ACC_READ, 1, 3));
        assert!(!run(&p, false, ACC_MKNOD, 1, 3));
    }
}
