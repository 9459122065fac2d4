//! The reference engine: every rule in order, first match wins. Obviously correct, O(rules).

use super::{Classifier, Key, RuleId};
use crate::policy::model::Policy;

/// Linear first-match scan over a copy of the policy's rules of one key type.
pub struct Linear<K: Key> {
    rules: Vec<K::Match>,
}

impl<K: Key> Linear<K>
where
    K::Match: Clone,
{
    pub fn new(policy: &Policy) -> Self {
        Linear {
            rules: K::rules(policy).into_iter().cloned().collect(),
        }
    }
}

impl<K: Key> Classifier<K> for Linear<K>
where
    K::Match: Send + Sync,
{
    fn name(&self) -> &'static str {
        "linear"
    }

    fn classify(&self, key: &K) -> Option<RuleId> {
        self.rules
            .iter()
            .position(|m| key.matched_by(m))
            .map(|i| RuleId(i as u32))
    }

    fn classify_counted(&self, key: &K) -> (Option<RuleId>, u32) {
        match self.classify(key) {
            Some(r) => (Some(r), r.0 + 1),
            None => (None, self.rules.len() as u32),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.rules.capacity() * std::mem::size_of::<K::Match>()
    }
}
