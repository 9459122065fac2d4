//! Rule sets from outside and from nowhere: the ClassBench importer and the generator of
//! IPv6-native rule sets and keys used by tests and benchmarks.

pub mod classbench;
pub mod rules;
