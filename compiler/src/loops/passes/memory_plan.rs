//! `memory-plan`: gives every temporary a memory slot, temporaries whose live ranges do
//! not overlap sharing one. It moves the program from `Stage::Kernels` to
//! `Stage::Planned`, the only stage a backend accepts.
//!
//! Establishes: every `BufKind::Temp` names a slot at least its size, and two temporaries
//! in one slot are never alive at the same moment (a tile group is one moment).

use super::util::live_ranges;
use super::Pass;
use crate::loops::*;

/// buffer any of them touches lives from the group's first kernel to its last.
fn run(p: &mut Program) {
    let life = live_ranges(p);
    let mut temps: Vec<(usize, usize, usize, usize)> = Vec::new(); // first, last, len, buf
    for (k, b) in p.bufs.iter().enumerate() {
        if let (BufKind::Temp { .. }, Some((first, last))) = (&b.kind, life[k]) {
            temps.push((first, last, b.len(), k));
        }
    }
    temps.sort();
    let mut slots: Vec<usize> = Vec::new();
    let mut busy_until: Vec<usize> = Vec::new();
    let mut assigned: Vec<Option<usize>> = vec![None; p.bufs.len()];
    for &(first, last, len, buf) in &temps {
        let free: Vec<usize> = (0..slots.len()).filter(|&s| busy_until[s] < first).collect();
        let fit = free.iter().copied().filter(|&s| slots[s] >= len).min_by_key(|&s| slots[s]);
        let slot = match fit.or_else(|| free.iter().copied().max_by_key(|&s| slots[s])) {
            Some(s) => {
                slots[s] = slots[s].max(len);
                s
            }
            None => {
                slots.push(len);
                busy_until.push(0);
                slots.len() - 1
            }
        };
        busy_until[slot] = last;
        assigned[buf] = Some(slot);
    }
    // A temporary no kernel touches still needs a home; give it an empty-sized view.
    for (k, b) in p.bufs.iter_mut().enumerate() {
        if let BufKind::Temp { slot } = &mut b.kind {
            *slot = match assigned[k] {
                Some(s) => s,
                None => {
                    slots.push(b.shape.iter().product());
                    slots.len() - 1
                }
            };
        }
    }
    p.slots = slots;
}

pub(super) const PASS: Pass = Pass { name: "memory-plan", from: Stage::Kernels, to: Stage::Planned, run };
