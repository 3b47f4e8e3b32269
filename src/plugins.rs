//! The one place that knows every plugin type: the engine builds plugins
//! from config through here and never looks inside them.

use std::sync::Arc;

use fuwa_api::{BuildContext, ConfigError, ConfigSection, Filter, Input, Output};

/// A plugin's `build`: its config section in, the plugin (`P`: a boxed
/// input or filter, a shared output) or every problem found out.
pub type Factory<P> = fn(&ConfigSection<'_>, &BuildContext) -> Result<P, Vec<ConfigError>>;
type InputFactory = Factory<Box<dyn Input>>;
type FilterFactory = Factory<Box<dyn Filter>>;
type OutputFactory = Factory<Arc<dyn Output>>;

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
    ("kinesis_streams", fuwa_out_kinesis_streams::build),
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

/// A body for a section of each plugin type that loads as it is (paths
/// point nowhere real), for tools and tests that probe sections one key at
/// a time (the config fuzz test, the reference-drift test).
pub fn minimal_section(kind: &str, ty: &str) -> &'static str {
    match (kind, ty) {
        ("input", "forward") | ("input", "http") => "bind = \"127.0.0.1:0\"",
        ("input", "tail") => "path = \"/nonexistent/fuwa-fuzz/*.log\"\ntag = \"t\"",
        ("filter", "types") => "fields = { a = \"integer\" }",
        ("filter", "record") => "set = { a = \"b\" }",
        ("filter", "grep") => "regexp = [{ key = \"a\", pattern = \"b\" }]",
        ("filter", "parser") => "key_name = \"log\"\nformat = \"json\"",
        ("output", "file") => "path = \"/nonexistent/fuwa-fuzz/${tag}.log\"",
        ("output", "s3") => "bucket = \"b\"\nregion = \"us-east-1\"",
        ("output", "firehose") => "delivery_stream = \"d\"\nregion = \"us-east-1\"",
        ("output", "kinesis_streams") => "stream_name = \"s\"\nregion = \"us-east-1\"",
        ("output", "forward") => "servers = [{ host = \"127.0.0.1\", port = 1 }]",
        _ => "",
    }
}
