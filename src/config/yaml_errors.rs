//! YAML errors: turning what serde-saphyr reports into a located, operator-worded `Problem`.
//!
//! Owns: the classes of YAML problems (`Class`) and their messages in YAML terms, and what each
//! position of the file expects (`expected_at`, from the schema).
//! Invariants: the class comes from the parser's error variant only, and what a wrong value should
//! have been from its position (the key path serde was at, looked up in the schema); the parser's
//! message text is never inspected, only shown (for syntax errors, which have no schema meaning).
//! A problem's location is the parser's; its key is the path, without serde's `Spanned` fields.

use std::path::Path;

use serde_path_to_error::Segment;
use serde_saphyr::Error as YamlError;

use super::problem::{Problem, did_you_mean};
use super::schema::KEYS;
use crate::home::display_path;

/// The values `type:` accepts (checked against serde's own list by a test).
const SOURCE_TYPES: &[&str] = &["local_files", "obsidian", "maildir", "mbox"];
/// The values `priority:` accepts (checked against serde's own list by a test).
const PRIORITIES: &[&str] = &["low", "normal", "high"];

/// What the value at a position of the file must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Expected {
    WholeNumber,
    Number,
    Boolean,
    Text,
    /// A mapping of `key: value` lines.
    Section,
    /// A sequence.
    List,
    OneOf(&'static [&'static str]),
}

impl Expected {
    fn message(self) -> String {
        match self {
            Expected::WholeNumber => "expected a whole number".into(),
            Expected::Number => "expected a number".into(),
            Expected::Boolean => "expected true or false".into(),
            Expected::Text => "expected a text value".into(),
            Expected::Section => "expected a section of `key: value` lines".into(),
            Expected::List => "expected a list (lines starting with `- `)".into(),
            Expected::OneOf(values) => format!("expected one of {}", values.join(", ")),
        }
    }

    /// The expectation of a scalar key of the schema, from its documented kind.
    fn of_key(path: &str) -> Option<Expected> {
        match KEYS.iter().find(|k| k.path == path)?.kind {
            "integer" => Some(Expected::WholeNumber),
            "number" => Some(Expected::Number),
            "boolean" => Some(Expected::Boolean),
            "string" => Some(Expected::Text),
            _ => None,
        }
    }
}

/// One step of the path to a value: a key of a mapping or an index of a list.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The path serde was at, as the operator wrote it: serde's `Spanned` wrapper adds a `value`
/// field after every spanned key, and positions serde could not name are `Unknown`. No schema key
/// is called `value`, so a `value` key is the wrapper's, except an unknown key, which always ends
/// the path of its error.
pub(super) fn steps(segments: &[Segment], unknown_key_last: bool) -> Vec<Step> {
    let last = segments.len().saturating_sub(1);
    segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Segment::Map { key } if key == "value" && !(unknown_key_last && i == last) => None,
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Unknown => None,
        })
        .collect()
}

fn render_steps(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What the value at `steps` must be, from the schema: top-level sections and `sources`, the
/// scalar keys, and the fields of a source.
pub(super) fn expected_at(steps: &[Step]) -> Option<Expected> {
    use Step::{Index, Key};
    fn key(s: &Step) -> Option<&str> {
        match s {
            Key(k) => Some(k),
            Index(_) => None,
        }
    }
    match steps {
        [] => Some(Expected::Section),
        [Key(s)] if s == "sources" => Some(Expected::List),
        [Key(s)] if KEYS.iter().any(|k| k.path.split('.').next() == Some(s)) => {
            Some(Expected::Section)
        }
        [Key(s), Key(k)] if s != "sources" => Expected::of_key(&format!("{s}.{k}")),
        [Key(s), Index(_)] if s == "sources" => Some(Expected::Section),
        [Key(s), Index(_), field, rest @ ..] if s == "sources" => match (key(field)?, rest) {
            ("name" | "path" | "schedule", []) => Some(Expected::Text),
            ("type", []) => Some(Expected::OneOf(SOURCE_TYPES)),
            ("priority", []) => Some(Expected::OneOf(PRIORITIES)),
            ("enabled", []) => Some(Expected::Boolean),
            ("include" | "exclude", []) => Some(Expected::List),
            ("include" | "exclude", [Index(_)]) => Some(Expected::Text),
            ("max_item_mb" | "concurrency" | "items_per_second", []) => Some(Expected::WholeNumber),
            ("retry", []) => Some(Expected::Section),
            ("retry", [Key(k)]) => Expected::of_key(&format!("retry.{k}")),
            _ => None,
        },
        _ => None,
    }
}

/// The kinds of YAML problem, each with its own message.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Class {
    UnknownKey {
        field: String,
        expected: Vec<&'static str>,
    },
    UnknownValue {
        variant: String,
        expected: Vec<&'static str>,
    },
    MissingKey(&'static str),
    DuplicateKey(Option<String>),
    /// An empty value where text is required (`name:` with nothing after it).
    MissingValue,
    /// A value of the wrong type or shape; what it should be comes from its position.
    WrongType,
    /// The text is not YAML (the scanner's and parser's own errors).
    NotYaml,
    MultipleDocuments,
    /// Aliases or nesting beyond the parser's safety budget.
    TooComplex,
    /// Anything else the parser reports.
    Other,
}

/// The error the parser raised, inside the wrappers that add snippets or alias locations.
fn original(mut err: &YamlError) -> &YamlError {
    loop {
        match err {
            YamlError::WithSnippet { error, .. } | YamlError::AliasError { error, .. } => {
                err = error
            }
            other => return other,
        }
    }
}

/// The class of a parser error, from its variant alone.
pub(super) fn classify(err: &YamlError) -> Class {
    use YamlError as E;
    match original(err) {
        E::SerdeUnknownField {
            field, expected, ..
        } => Class::UnknownKey {
            field: field.clone(),
            expected: expected.clone(),
        },
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => Class::UnknownValue {
            variant: variant.clone(),
            expected: expected.clone(),
        },
        E::SerdeMissingField { field, .. } => Class::MissingKey(field),
        E::DuplicateMappingKey { key, .. } => Class::DuplicateKey(key.clone()),
        E::NullIntoString { .. } | E::InvalidCharNull { .. } => Class::MissingValue,
        E::Unexpected { .. }
        | E::InvalidScalar { .. }
        | E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::InvalidBooleanStrict { .. }
        | E::NonFiniteFloat { .. }
        | E::QuotingRequired { .. }
        | E::InvalidCharNotSingleScalar { .. }
        | E::TaggedScalarCannotDeserializeIntoString { .. }
        | E::TaggedEnumMismatch { .. }
        | E::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | E::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | E::UnexpectedValueForUnitEnumVariant { .. }
        | E::ExpectedMappingEndAfterEnumVariantValue { .. }
        | E::UnexpectedValueForUnit { .. }
        | E::ExpectedEmptyMappingForUnitStruct { .. }
        | E::BytesNotSupportedMissingBinaryTag { .. }
        | E::InvalidBinaryBase64 { .. }
        | E::BinaryNotUtf8 { .. } => Class::WrongType,
        E::ExternalMessage { .. }
        | E::Eof { .. }
        | E::InvalidUtf8Input
        | E::UnknownAnchor { .. }
        | E::UnexpectedSequenceEnd { .. }
        | E::UnexpectedMappingEnd { .. }
        | E::UnexpectedContainerEndWhileReadingKeyNode { .. }
        | E::UnexpectedContainerEndWhileSkippingNode { .. }
        | E::ContainerEndMismatch { .. }
        | E::FoldedBlockScalarMustIndentContent { .. }
        | E::IndentationError { .. }
        | E::MergeValueNotMapOrSeqOfMaps { .. }
        | E::UnsupportedTag { .. } => Class::NotYaml,
        E::MultipleDocuments { .. } => Class::MultipleDocuments,
        E::Budget { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. } => Class::TooComplex,
        _ => Class::Other,
    }
}

/// The parser's own words for an error, without its location (which the problem shows as
/// `file:line:col`): for errors that have no meaning in the schema, such as syntax errors.
fn parser_words(err: &YamlError) -> String {
    use serde_saphyr::MessageFormatter as _;
    serde_saphyr::UserMessageFormatter
        .format_message(original(err))
        .into_owned()
}

/// The problem an operator reads for a parser error raised at `segments` of the file.
pub(super) fn problem_from_yaml(err: YamlError, segments: &[Segment], file: &Path) -> Problem {
    let class = classify(&err);
    let mut steps = steps(segments, matches!(class, Class::UnknownKey { .. }));
    let message = match &class {
        Class::UnknownKey { field, expected } => {
            // serde_path_to_error's path usually ends at the unknown key already.
            if steps.last() != Some(&Step::Key(field.clone())) {
                steps.push(Step::Key(field.clone()));
            }
            format!(
                "unknown key{}",
                did_you_mean(field, expected.iter().copied())
            )
        }
        Class::UnknownValue { variant, expected } => format!(
            "unknown value `{variant}`; expected one of {}",
            expected.join(", ")
        ),
        Class::MissingKey(field) => format!("missing key `{field}`"),
        Class::DuplicateKey(key) => {
            // The path ends at the mapping that holds the key twice.
            if let Some(key) = key {
                steps.push(Step::Key(key.clone()));
            }
            "this key appears twice in its section; each key may appear once".into()
        }
        Class::MissingValue => "a value is missing here".into(),
        Class::WrongType => match expected_at(&steps) {
            Some(expected) => expected.message(),
            None => parser_words(&err),
        },
        Class::NotYaml => format!("not valid YAML: {}", parser_words(&err)),
        Class::MultipleDocuments => {
            "the file holds more than one YAML document (a second `---`); write one".into()
        }
        Class::TooComplex => format!(
            "the file exceeds the YAML reader's safety limits (aliases or nesting): {}",
            parser_words(&err)
        ),
        Class::Other => parser_words(&err),
    };
    let key = render_steps(&steps);
    let problem = match err.location() {
        Some(loc) if loc.line() > 0 => {
            Problem::in_file(file, loc.line(), loc.column(), key, message)
        }
        _ => Problem::new(display_path(file), key, message),
    };
    problem.caused_by(err)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load::parse_file;

    fn problem(text: &str) -> Problem {
        parse_file(text, Path::new("/x/c.yaml")).unwrap_err()
    }

    /// The parser's error for `text`, with the path serde was at.
    fn parser_error(text: &str) -> (YamlError, Vec<Segment>) {
        parser_error_with(text, serde_saphyr::options! { with_snippet: false })
    }

    fn parser_error_with(text: &str, options: serde_saphyr::Options) -> (YamlError, Vec<Segment>) {
        let mut path = Vec::new();
        let err = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize::<_, super::super::schema::FileConfig>(de).map_err(
                |e| {
                    path = e.path().iter().cloned().collect();
                    e.into_inner()
                },
            )
        })
        .unwrap_err();
        (err, path)
    }

    /// The same words as `err`, at the same place, but a free-form message: a classifier that
    /// read the text would treat both alike.
    fn text_twin(err: &YamlError) -> YamlError {
        YamlError::Message {
            msg: parser_words(err),
            location: err.location().unwrap_or(serde_saphyr::Location::UNKNOWN),
        }
    }

    /// Classify the parser's error for `text`, check it is `class`, and check that its text twin
    /// is `Other` and reads differently: the class came from the variant, not the words.
    fn proves(text: &str, class: Class) -> Problem {
        let (err, path) = parser_error(text);
        assert_eq!(classify(&err), class, "{text:?}");
        let twin = text_twin(&err);
        assert_eq!(classify(&twin), Class::Other, "{text:?}");
        let twin = problem_from_yaml(twin, &path, Path::new("/x/c.yaml"));
        let real = problem_from_yaml(err, &path, Path::new("/x/c.yaml"));
        assert_ne!(real.message, twin.message, "{text:?}");
        real
    }

    #[test]
    fn unknown_key_reports_location_and_suggestion() {
        let p = proves(
            "workers:\n  max_worker: 4\n",
            Class::UnknownKey {
                field: "max_worker".into(),
                expected: vec![
                    "max_workers",
                    "hardware_cap_enabled",
                    "shutdown_grace_seconds",
                    "stall_timeout_seconds",
                    "cancel_grace_seconds",
                ],
            },
        );
        assert_eq!(p.at, "/x/c.yaml:2:3");
        assert_eq!(p.key, "workers.max_worker");
        assert_eq!(p.message, "unknown key; did you mean `max_workers`?");
        // A key called `value` is an unknown key, not serde's `Spanned` field.
        assert_eq!(problem("workers:\n  value: 4\n").key, "workers.value");
    }

    #[test]
    fn unknown_value_lists_the_values_serde_accepts() {
        let p = proves(
            "sources:\n  - name: a\n    type: local_folder\n    path: /x\n",
            Class::UnknownValue {
                variant: "local_folder".into(),
                expected: SOURCE_TYPES.to_vec(),
            },
        );
        assert_eq!(p.key, "sources[0].type");
        assert_eq!(
            p.message,
            "unknown value `local_folder`; expected one of local_files, obsidian, maildir, mbox"
        );
        // The lists this module names are serde's own.
        let (err, _) = parser_error("sources:\n  - {name: a, type: x, priority: y, path: /x}\n");
        let Class::UnknownValue { expected, .. } = classify(&err) else {
            panic!("{err}")
        };
        assert_eq!(expected, SOURCE_TYPES);
        let (err, _) = parser_error("sources:\n  - {name: a, type: mbox, priority: y, path: /x}\n");
        let Class::UnknownValue { expected, .. } = classify(&err) else {
            panic!("{err}")
        };
        assert_eq!(expected, PRIORITIES);
    }

    #[test]
    fn missing_key_names_the_key() {
        let p = proves(
            "sources:\n  - name: a\n    path: /x\n",
            Class::MissingKey("type"),
        );
        assert_eq!(p.key, "sources[0]");
        assert_eq!(p.message, "missing key `type`");
        assert!(p.at.starts_with("/x/c.yaml:3:"), "{}", p.at);
    }

    #[test]
    fn duplicate_key_names_the_key_in_its_section() {
        let p = proves(
            "workers:\n  max_workers: 1\n  max_workers: 2\n",
            Class::DuplicateKey(Some("max_workers".into())),
        );
        assert_eq!(p.at, "/x/c.yaml:3:3");
        assert_eq!(p.key, "workers.max_workers");
        assert_eq!(
            p.message,
            "this key appears twice in its section; each key may appear once"
        );
    }

    #[test]
    fn missing_value_is_reported_where_it_is_missing() {
        let p = proves(
            "sources:\n  - name:\n    type: mbox\n    path: /x\n",
            Class::MissingValue,
        );
        assert_eq!(p.at, "/x/c.yaml:2:9");
        assert_eq!(p.key, "sources[0].name");
        assert_eq!(p.message, "a value is missing here");
    }

    /// What a wrong value should have been comes from where it is, whatever type the parser
    /// says it tried: `!!str 3` makes the parser speak of a string, the key wants a number.
    #[test]
    fn wrong_type_says_what_the_position_expects() {
        for (text, key, message) in [
            (
                "retry:\n  max_attempts: many\n",
                "retry.max_attempts",
                "expected a whole number",
            ),
            (
                "retry:\n  jitter: abc\n",
                "retry.jitter",
                "expected a number",
            ),
            (
                "queue:\n  wal_mode: maybe\n",
                "queue.wal_mode",
                "expected true or false",
            ),
            (
                "workers: 5\n",
                "workers",
                "expected a section of `key: value` lines",
            ),
            ("- a\n", "", "expected a section of `key: value` lines"),
            (
                "sources: 5\n",
                "sources",
                "expected a list (lines starting with `- `)",
            ),
            (
                "sources:\n  - 5\n",
                "sources[0]",
                "expected a section of `key: value` lines",
            ),
            (
                "sources:\n  - name: [a]\n    type: mbox\n    path: /x\n",
                "sources[0].name",
                "expected a text value",
            ),
            (
                "sources:\n  - name: a\n    type: [mbox]\n    path: /x\n",
                "sources[0].type",
                "expected one of local_files, obsidian, maildir, mbox",
            ),
            (
                "sources:\n  - name: a\n    type: mbox\n    path: /x\n    include: foo\n",
                "sources[0].include",
                "expected a list (lines starting with `- `)",
            ),
            (
                "sources:\n  - name: a\n    type: mbox\n    path: /x\n    retry:\n      jitter: x\n",
                "sources[0].retry.jitter",
                "expected a number",
            ),
            (
                "workers:\n  max_workers: !!str 3\n",
                "workers.max_workers",
                "expected a whole number",
            ),
        ] {
            let p = proves(text, Class::WrongType);
            assert_eq!(
                (p.key.as_str(), p.message.as_str()),
                (key, message),
                "{text:?}"
            );
        }
        let p = problem("retry:\n  max_attempts: three\n");
        assert_eq!(p.at, "/x/c.yaml:2:17");
    }

    #[test]
    fn text_that_is_not_yaml_shows_the_parser_words_as_such() {
        for text in [
            "workers:\n\tmax_workers: 2\n",
            "workers: 'a\n",
            "workers: *nope\n",
        ] {
            let p = proves(text, Class::NotYaml);
            assert!(p.message.starts_with("not valid YAML: "), "{}", p.message);
            assert!(p.at.starts_with("/x/c.yaml:"), "{}", p.at);
        }
    }

    #[test]
    fn a_second_document_is_refused() {
        let p = proves(
            "---\nworkers: {}\n---\nretry: {}\n",
            Class::MultipleDocuments,
        );
        assert_eq!(p.at, "/x/c.yaml:4:1");
    }

    #[test]
    fn aliases_beyond_the_budget_are_too_complex() {
        let text = "sources:\n  - name: &n a\n    type: mbox\n    path: *n\n    schedule: *n\n";
        let options = serde_saphyr::options! {
            with_snippet: false,
            budget: serde_saphyr::budget! { max_aliases: 1 },
        };
        let (err, path) = parser_error_with(text, options);
        assert_eq!(classify(&err), Class::TooComplex, "{err}");
        assert_eq!(classify(&text_twin(&err)), Class::Other);
        let p = problem_from_yaml(err, &path, Path::new("/x/c.yaml"));
        assert!(
            p.message
                .starts_with("the file exceeds the YAML reader's safety limits")
        );
    }

    /// Every field of a source (serde's list, from the struct) has an expectation, so a wrong
    /// value there is never reported in the parser's words.
    #[test]
    fn every_position_of_the_schema_has_an_expectation() {
        let (err, _) = parser_error("sources:\n  - {name: a, type: mbox, path: /x, nope: 1}\n");
        let Class::UnknownKey { expected, .. } = classify(&err) else {
            panic!("{err}")
        };
        for field in expected {
            let steps = [
                Step::Key("sources".into()),
                Step::Index(0),
                Step::Key(field.into()),
            ];
            assert!(expected_at(&steps).is_some(), "sources[0].{field}");
        }
        for key in KEYS {
            let steps: Vec<Step> = key.path.split('.').map(|s| Step::Key(s.into())).collect();
            assert!(expected_at(&steps).is_some(), "{}", key.path);
            assert_eq!(expected_at(&steps[..1]), Some(Expected::Section));
        }
    }

    #[test]
    fn a_problem_keeps_the_parser_error_as_its_source() {
        let p = problem("retry:\n  max_attempts: many\n");
        let source = std::error::Error::source(&p).expect("a source");
        assert!(source.downcast_ref::<YamlError>().is_some());
    }
}
