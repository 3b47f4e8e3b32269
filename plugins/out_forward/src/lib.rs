//! Forward output: ships chunks to Fluentd, Fluent Bit or another fuwa.
