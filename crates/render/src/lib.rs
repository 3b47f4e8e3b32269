//! What fuwa outputs share: path/key templates, time formats and the
//! msgpack → JSON Lines encoder.

pub mod json;
pub mod template;
pub mod time;

pub use json::{value_json, write_json_line, write_json_value, Inject, InjectValue, JsonLines};
pub use template::Template;
pub use time::{parse_timezone, TimeFormat};
