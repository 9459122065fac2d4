//! The IPv6 flow label: one 20-bit newtype shared by the policy language, the packet path and
//! the socket layer, so a value wider than 20 bits is rejected where it enters, not where it is used.

use std::fmt;

/// A 20-bit IPv6 flow label (RFC 6437). `0` means "unlabelled".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct FlowLabel(u32);

/// A value that does not fit in the 20 bits of a flow label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow label {value:#x} is wider than 20 bits (maximum {max:#x})", max = FlowLabel::MAX.0)]
pub struct FlowLabelError {
    /// The rejected value.
    pub value: u64,
}

impl FlowLabel {
    /// The largest label, `0xfffff`.
    pub const MAX: FlowLabel = FlowLabel(0xf_ffff);
    /// The "unlabelled" label.
    pub const ZERO: FlowLabel = FlowLabel(0);
    /// The mask of the 20 label bits.
    pub const MASK: u32 = 0xf_ffff;

    /// Checks that `value` fits in 20 bits.
    pub fn new(value: u64) -> Result<Self, FlowLabelError> {
        if value <= u64::from(Self::MASK) {
            Ok(FlowLabel(value as u32))
        } else {
            Err(FlowLabelError { value })
        }
    }

    /// Takes the low 20 bits of a word, e.g. the first 32 bits of an IPv6 header.
    pub const fn from_low_bits(word: u32) -> Self {
        FlowLabel(word & Self::MASK)
    }

    /// The label as an integer.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// True for label 0, "unlabelled".
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<u32> for FlowLabel {
    type Error = FlowLabelError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        FlowLabel::new(u64::from(value))
    }
}

impl From<FlowLabel> for u32 {
    fn from(l: FlowLabel) -> u32 {
        l.0
    }
}

impl fmt::Display for FlowLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#07x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(FlowLabel::new(0xfffff).unwrap().value(), 0xfffff);
        assert_eq!(
            FlowLabel::new(0x100000),
            Err(FlowLabelError { value: 0x100000 })
        );
        assert!(FlowLabel::try_from(u32::MAX).is_err());
        assert_eq!(FlowLabel::from_low_bits(0x6012_3456).value(), 0x2_3456);
        assert_eq!(FlowLabel::new(0x12345).unwrap().to_string(), "0x12345");
        assert!(FlowLabel::ZERO.is_zero());
    }
}
