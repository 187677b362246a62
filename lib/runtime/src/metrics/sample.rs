//! What an encoder is handed for one series: its labels and its value, read
//! from the metric without committing to any exposition format.

use prometheus::proto;

/// The value of one series. (`pub` in a private module: the sealed trait
/// that reads values names it.)
#[derive(Debug, Clone, Copy)]
pub enum SeriesValue<'a> {
    /// A float counter or gauge.
    Float(f64),
    /// An integer counter or gauge.
    Int(i128),
    /// A histogram: cumulative buckets (without `+Inf`), count and sum.
    Histogram(&'a proto::Histogram),
}

/// The labels of one series: escaped once at creation (what the text formats
/// write as they are), and the raw pairs (what a binary format needs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesLabels<'a> {
    /// `a="x",b="y"`, sorted by name and escaped; empty if none.
    pub escaped: &'a str,
    /// Read by binary formats (protobuf); the text formats write `escaped`.
    #[allow(dead_code)]
    pub raw: RawLabels<'a>,
}

/// The raw label pairs of a series, as the store keeps them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawLabels<'a> {
    /// A plain series: its constant labels, sorted by name.
    Const(&'a [(String, String)]),
    /// A child of a vec: the vec's constant labels, and its variable label
    /// names with this child's values.
    Child {
        consts: &'a [(String, String)],
        names: &'a [String],
        values: &'a [String],
    },
}

impl<'a> RawLabels<'a> {
    /// Every pair, sorted by label name.
    #[allow(dead_code)] // See `SeriesLabels::raw`.
    pub(crate) fn sorted_pairs(&self) -> Vec<(&'a str, &'a str)> {
        let mut pairs: Vec<(&str, &str)> = match *self {
            RawLabels::Const(consts) => consts
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            RawLabels::Child {
                consts,
                names,
                values,
            } => consts
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(
                    names
                        .iter()
                        .map(String::as_str)
                        .zip(values.iter().map(String::as_str)),
                )
                .collect(),
        };
        pairs.sort_unstable_by_key(|(k, _)| *k);
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_pairs_are_sorted_across_constant_and_variable_labels() {
        let consts = vec![("m".to_owned(), "1".to_owned())];
        let names = vec!["z".to_owned(), "a".to_owned()];
        let values = vec!["zv".to_owned(), "av".to_owned()];
        let raw = RawLabels::Child {
            consts: &consts,
            names: &names,
            values: &values,
        };
        assert_eq!(
            raw.sorted_pairs(),
            vec![("a", "av"), ("m", "1"), ("z", "zv")]
        );
    }
}
