//! The one place that knows every plugin type: the engine builds plugins
//! from config through here and never looks inside them.

use std::sync::Arc;

use fuwa_api::{BuildContext, ConfigError, ConfigSection, Filter, Input, Output};

type InputFactory =
    fn(&ConfigSection<'_>, &BuildContext) -> Result<Box<dyn Input>, Vec<ConfigError>>;
type FilterFactory =
    fn(&ConfigSection<'_>, &BuildContext) -> Result<Box<dyn Filter>, Vec<ConfigError>>;
type OutputFactory =
    fn(&ConfigSection<'_>, &BuildContext) -> Result<Arc<dyn Output>, Vec<ConfigError>>;

pub const INPUTS: &[(&str, InputFactory)] = &[
    ("forward", fuwa_in_forward::build),
    ("tail", fuwa_in_tail::build),
    ("http", fuwa_in_http::build),
];

pub const FILTERS: &[(&str, FilterFactory)] = &[
    ("types", fuwa_filter_types::build),
    ("record", fuwa_filter_record::build),
    ("grep", fuwa_filter_grep::build),
    ("parser", fuwa_filter_parser::build),
    ("user_agent", fuwa_filter_user_agent::build),
    ("referrer", fuwa_filter_referrer::build),
];

pub const OUTPUTS: &[(&str, OutputFactory)] = &[
    ("file", fuwa_out_file::build),
    ("stdout", fuwa_out_stdout::build),
    ("null", fuwa_out_null::build),
    ("s3", fuwa_out_s3::build),
    ("firehose", fuwa_out_firehose::build),
    ("forward", fuwa_out_forward::build),
];

pub fn find<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

pub fn names<T>(table: &[(&str, T)]) -> String {
    if table.is_empty() {
        return "none yet".into();
    }
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
