//! Checks on output constraints (GBNF grammars, JSON schemas) before they reach a
//! shared worker.
//!
//! llama.cpp parses grammars and converts schemas recursively, in the worker process
//! that every tenant of a model shares: a grammar nested 100,000 levels deep overflows
//! its stack and ends everyone's streams. And the schema converter quietly turns what
//! it cannot enforce (a regex lookahead, `\d`, `format: email`, bounds on a non-integer
//! number) into "any value", although the API promises the schema is enforced. So the
//! daemon checks every constraint first: sizes and nesting are bounded, and a schema
//! keyword or pattern feature the grammar cannot enforce is refused with a message
//! naming where it is. Shorthand classes (`\d`, `\w`, `\s` and their negations) are
//! rewritten into the bracket classes the converter understands.

use serde_json::Value;

use super::protocol::Constraint;

/// Largest grammar accepted, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 32 * 1024;
/// Largest JSON schema accepted, serialised, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of parentheses in a grammar or pattern, and of a schema document.
pub const MAX_DEPTH: usize = 32;
/// llama.cpp's limit on one repetition count (`{m,n}`, `minLength`, `maxItems`, …).
pub const MAX_REPETITION: u64 = 2000;

/// A constraint that cannot be enforced or is too large; `at` locates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Where in the schema (a JSON pointer) or grammar (a byte offset) the problem is.
    pub at: String,
    /// What is wrong, for a person.
    pub message: String,
}

fn refused(at: impl Into<String>, message: impl Into<String>) -> Refused {
    Refused {
        at: at.into(),
        message: message.into(),
    }
}

/// Checks a constraint, rewriting what it can into an equivalent the worker enforces.
pub fn check(constraint: Constraint) -> Result<Constraint, Refused> {
    match constraint {
        Constraint::JsonObject => Ok(Constraint::JsonObject),
        Constraint::Grammar(grammar) => {
            check_grammar(&grammar)?;
            Ok(Constraint::Grammar(grammar))
        }
        Constraint::JsonSchema(text) => Ok(Constraint::JsonSchema(checked_schema(&text)?)),
        Constraint::ToolCalls {
            schema,
            open,
            close,
            parallel,
        } => {
            if open.len() + close.len() > 256 {
                return Err(refused("", "the tool-call framing is too long"));
            }
            Ok(Constraint::ToolCalls {
                schema: checked_schema(&schema)?,
                open,
                close,
                parallel,
            })
        }
    }
}

/// Bounds and checks one serialised schema, returning it rewritten.
fn checked_schema(text: &str) -> Result<String, Refused> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(refused(
            "",
            format!("the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes"),
        ));
    }
    let mut schema: Value =
        serde_json::from_str(text).map_err(|_| refused("", "the JSON schema is not valid JSON"))?;
    check_schema(&mut schema)?;
    Ok(schema.to_string())
}

/// Bounds a GBNF grammar's size, group nesting and repetition counts.
pub fn check_grammar(grammar: &str) -> Result<(), Refused> {
    if grammar.len() > MAX_GRAMMAR_BYTES {
        return Err(refused(
            "",
            format!("the grammar is larger than {MAX_GRAMMAR_BYTES} bytes"),
        ));
    }
    let bytes = grammar.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'[') => {
                let close = if quote == b'"' { b'"' } else { b']' };
                i += 1;
                while i < bytes.len() && bytes[i] != close {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(refused(
                        format!("byte {i}"),
                        format!("the grammar nests groups deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            b')' => depth = depth.saturating_sub(1),
            b'{' => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| *b == b'}')
                    .map_or(bytes.len(), |n| i + n);
                for number in grammar[i + 1..end].split(',') {
                    let number = number.trim();
                    if number.is_empty() {
                        continue;
                    }
                    if number.parse::<u64>().map_or(true, |n| n > MAX_REPETITION) {
                        return Err(refused(
                            format!("byte {i}"),
                            format!(
                                "repetition counts in a grammar must be at most {MAX_REPETITION}"
                            ),
                        ));
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Keywords that only describe; the grammar ignores them and that changes nothing.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
    "strict",
];
/// Keywords the grammar enforces.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];
const FORMATS: &[&str] = &[
    "date",
    "time",
    "date-time",
    "uuid",
    "uuid1",
    "uuid2",
    "uuid3",
    "uuid4",
    "uuid5",
];

/// Checks a JSON schema document (in place: patterns are normalised).
pub fn check_schema(schema: &mut Value) -> Result<(), Refused> {
    if depth(schema) > MAX_DEPTH {
        return Err(refused(
            "",
            format!("the JSON schema nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut nodes = 0;
    check_node(schema, "", &mut nodes)
}

fn depth(value: &Value) -> usize {
    // Iterative, so a hostile document cannot overflow this check's own stack.
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn check_node(node: &mut Value, at: &str, nodes: &mut usize) -> Result<(), Refused> {
    *nodes += 1;
    if *nodes > 2000 {
        return Err(refused(at, "the JSON schema has more than 2000 subschemas"));
    }
    let Value::Object(map) = node else {
        return match node {
            Value::Bool(true) => Ok(()),
            _ => Err(refused(at, "a schema must be an object")),
        };
    };
    for key in map.keys() {
        if !ANNOTATIONS.contains(&key.as_str()) && !ENFORCED.contains(&key.as_str()) {
            return Err(refused(
                format!("{at}/{key}"),
                format!(
                    "the keyword `{key}` cannot be enforced while generating; remove it or express it with the supported keywords"
                ),
            ));
        }
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let bounded = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
        .iter()
        .find(|k| map.contains_key(**k));
    if let Some(keyword) = bounded
        && !(types.contains(&"integer") && types.iter().all(|t| *t == "integer" || *t == "null"))
    {
        return Err(refused(
            format!("{at}/{keyword}"),
            format!("`{keyword}` can only be enforced on `\"type\": \"integer\"`"),
        ));
    }
    for keyword in ["minLength", "maxLength", "minItems", "maxItems"] {
        if let Some(value) = map.get(keyword)
            && value.as_u64().is_none_or(|n| n > MAX_REPETITION)
        {
            return Err(refused(
                format!("{at}/{keyword}"),
                format!("`{keyword}` must be an integer from 0 to {MAX_REPETITION}"),
            ));
        }
    }
    if let Some(format) = map.get("format") {
        let known = format.as_str().is_some_and(|f| FORMATS.contains(&f));
        if !known {
            return Err(refused(
                format!("{at}/format"),
                format!(
                    "`format` {format} cannot be enforced (supported: {})",
                    FORMATS.join(", ")
                ),
            ));
        }
    }
    if let Some(ref_) = map.get("$ref")
        && !ref_.as_str().is_some_and(|r| r.starts_with("#/"))
    {
        return Err(refused(
            format!("{at}/$ref"),
            "only references into the same document (`#/…`) are supported",
        ));
    }
    if let Some(pattern) = map.get_mut("pattern") {
        let Value::String(text) = pattern else {
            return Err(refused(
                format!("{at}/pattern"),
                "`pattern` must be a string",
            ));
        };
        *text = normalize_pattern(text).map_err(|m| refused(format!("{at}/pattern"), m))?;
    }
    // Subschemas.
    for keyword in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(keyword) {
            for (name, child) in children.iter_mut() {
                check_node(child, &format!("{at}/{keyword}/{name}"), nodes)?;
            }
        }
    }
    for keyword in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(children)) = map.get_mut(keyword) {
            for (i, child) in children.iter_mut().enumerate() {
                check_node(child, &format!("{at}/{keyword}/{i}"), nodes)?;
            }
        }
    }
    match map.get_mut("items") {
        Some(Value::Array(children)) => {
            for (i, child) in children.iter_mut().enumerate() {
                check_node(child, &format!("{at}/items/{i}"), nodes)?;
            }
        }
        Some(child) => check_node(child, &format!("{at}/items"), nodes)?,
        None => {}
    }
    if let Some(child @ Value::Object(_)) = map.get_mut("additionalProperties") {
        check_node(child, &format!("{at}/additionalProperties"), nodes)?;
    }
    Ok(())
}

/// Rewrites a regex `pattern` into the subset llama.cpp's converter enforces, or says
/// which feature it cannot. Mirrors the converter's parser: anchored `^…$`, literals,
/// `.`, `[…]`, `(…)` and `(?:…)`, `|`, `* + ? {m,n}`, and the escapes it knows.
pub fn normalize_pattern(pattern: &str) -> Result<String, String> {
    const SPECIAL: &[char] = &[
        '^', '$', '.', '[', ']', '(', ')', '|', '{', '}', '*', '+', '?',
    ];
    if pattern.len() > 1000 {
        return Err("the pattern is longer than 1000 bytes".into());
    }
    let inner = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .filter(|_| pattern.len() >= 2)
        .ok_or("the pattern must be anchored with `^` at the start and `$` at the end")?;
    let chars: Vec<char> = inner.chars().collect();
    let mut out = String::from("^");
    let mut depth = 0usize;
    let mut can_repeat = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    if chars.get(i + 2) != Some(&':') {
                        return Err("lookarounds, named groups and inline flags (`(?…`) cannot be enforced; only `(?:…)` groups".into());
                    }
                    out.push_str("(?:");
                    i += 3;
                } else {
                    out.push('(');
                    i += 1;
                }
                depth += 1;
                if depth > 20 {
                    return Err("the pattern nests groups deeper than 20 levels".into());
                }
                can_repeat = false;
                continue;
            }
            ')' => {
                if depth == 0 {
                    return Err("the pattern has an unbalanced `)`".into());
                }
                depth -= 1;
                out.push(')');
                can_repeat = true;
            }
            '^' | '$' => return Err("anchors inside the pattern cannot be enforced".into()),
            '|' => {
                out.push('|');
                can_repeat = false;
            }
            '.' => {
                out.push('.');
                can_repeat = true;
            }
            '*' | '+' | '?' => {
                if !can_repeat {
                    return Err(format!("`{c}` has nothing to repeat"));
                }
                out.push(c);
            }
            '{' => {
                let close = chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("the pattern has an unterminated `{`")?;
                let body: String = chars[i + 1..i + close].iter().collect();
                let ok_num = |p: &str| p.parse::<u64>().is_ok_and(|v| v <= MAX_REPETITION);
                let valid = match body.split(',').collect::<Vec<_>>().as_slice() {
                    [one] => ok_num(one),
                    [min, max] => {
                        (min.is_empty() || ok_num(min)) && (max.is_empty() || ok_num(max))
                    }
                    _ => false,
                };
                if !valid || !can_repeat {
                    return Err(format!(
                        "`{{{body}}}` is not a repetition the grammar can enforce (counts up to {MAX_REPETITION})"
                    ));
                }
                out.push('{');
                out.push_str(&body);
                out.push('}');
                i += close + 1;
                continue;
            }
            '[' => {
                let mut j = i + 1;
                out.push('[');
                if chars.get(j) == Some(&'^') {
                    out.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' {
                        let (text, used) = escape(&chars, j, true)?;
                        out.push_str(&text);
                        j += used;
                    } else {
                        out.push(chars[j]);
                        j += 1;
                    }
                }
                if j >= chars.len() {
                    return Err("the pattern has an unterminated `[`".into());
                }
                out.push(']');
                i = j + 1;
                can_repeat = true;
                continue;
            }
            '\\' => {
                let next = *chars
                    .get(i + 1)
                    .ok_or("the pattern ends with a backslash")?;
                if SPECIAL.contains(&next) {
                    out.push('\\');
                    out.push(next);
                    i += 2;
                } else {
                    let (text, used) = escape(&chars, i, false)?;
                    out.push_str(&text);
                    i += used;
                }
                can_repeat = true;
                continue;
            }
            ']' | '}' => return Err(format!("the pattern has a stray `{c}`")),
            other => {
                out.push(other);
                can_repeat = true;
            }
        }
        i += 1;
    }
    if depth != 0 {
        return Err("the pattern has an unbalanced `(`".into());
    }
    out.push('$');
    Ok(out)
}

/// One escape at `chars[at]` (a backslash): the text to emit and the chars used.
/// `in_class`: inside `[…]`, where only the positive shorthand classes can be inlined.
fn escape(chars: &[char], at: usize, in_class: bool) -> Result<(String, usize), String> {
    let next = *chars
        .get(at + 1)
        .ok_or("the pattern ends with a backslash")?;
    let hex = |n: usize| -> Result<(String, usize), String> {
        let digits: String = chars.iter().skip(at + 2).take(n).collect();
        if digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok((format!("\\{next}{digits}"), 2 + n))
        } else {
            Err(format!("`\\{next}` needs {n} hex digits"))
        }
    };
    let (positive, negative) = match next {
        'd' => ("0-9", false),
        'w' => ("a-zA-Z0-9_", false),
        's' => (" \\t\\n\\r", false),
        'D' => ("0-9", true),
        'W' => ("a-zA-Z0-9_", true),
        'S' => (" \\t\\n\\r", true),
        'x' => return hex(2),
        'u' => return hex(4),
        'U' => return hex(8),
        't' | 'r' | 'n' | '\\' | '"' | '[' | ']' | '-' => return Ok((format!("\\{next}"), 2)),
        other => {
            return Err(format!(
                "the escape `\\{other}` cannot be enforced (word boundaries, back-references and Unicode classes are not supported)"
            ));
        }
    };
    match (in_class, negative) {
        (true, false) => Ok((positive.to_string(), 2)),
        (true, true) => Err(format!(
            "`\\{next}` inside a character class cannot be enforced; list the characters instead"
        )),
        (false, false) => Ok((format!("[{positive}]"), 2)),
        (false, true) => Ok((format!("[^{positive}]"), 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_or_huge_grammars_are_refused() {
        let deep = format!(
            "root ::= {}\"a\"{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(check_grammar(&deep).is_err());
        let ok = format!("root ::= {}\"a\"{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(check_grammar(&ok), Ok(()));
        assert!(check_grammar("root ::= \"a\"{0,99999}").is_err());
        assert_eq!(check_grammar("root ::= [a-z]{60} \"(\" # ((((\n"), Ok(()));
        assert!(check_grammar(&"x".repeat(MAX_GRAMMAR_BYTES + 1)).is_err());
        assert_eq!(
            check_grammar(super::super::worker::JSON_OBJECT_GBNF),
            Ok(())
        );
    }

    #[test]
    fn unenforceable_schema_features_are_refused_with_their_location() {
        let mut lookahead = json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^(?=a)b$"}}});
        let e = check_schema(&mut lookahead).unwrap_err();
        assert_eq!(e.at, "/properties/code/pattern");
        let mut email = json!({"type": "string", "format": "email"});
        assert_eq!(check_schema(&mut email).unwrap_err().at, "/format");
        let mut unique = json!({"type": "array", "uniqueItems": true});
        assert_eq!(check_schema(&mut unique).unwrap_err().at, "/uniqueItems");
        let mut float_bound = json!({"type": "number", "minimum": 0.5});
        assert!(check_schema(&mut float_bound).is_err());
        let mut long = json!({"type": "string", "maxLength": 1_000_000});
        assert!(check_schema(&mut long).is_err());
        let mut deep = json!({});
        for _ in 0..100 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        assert!(check_schema(&mut deep).is_err());
    }

    #[test]
    fn common_schemas_pass_and_shorthand_classes_are_rewritten() {
        let mut schema = json!({
            "title": "Person", "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "zip": {"type": "string", "pattern": "^\\d{5}(-\\d{4})?$"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                "kind": {"anyOf": [{"const": "a"}, {"$ref": "#/$defs/k"}]},
                "when": {"type": "string", "format": "date-time"}
            },
            "required": ["name"], "additionalProperties": false,
            "$defs": {"k": {"enum": ["b", "c"]}}
        });
        check_schema(&mut schema).unwrap();
        assert_eq!(
            schema["properties"]["zip"]["pattern"],
            "^[0-9]{5}(-[0-9]{4})?$"
        );
        assert_eq!(
            normalize_pattern("^[\\w.]+\\.com$").unwrap(),
            "^[a-zA-Z0-9_.]+\\.com$"
        );
        assert_eq!(normalize_pattern("^\\S+$").unwrap(), "^[^ \\t\\n\\r]+$");
        assert!(normalize_pattern("^a\\bb$").is_err());
        assert!(normalize_pattern("abc").is_err());
        assert!(normalize_pattern("^a(b$").is_err());
        assert!(normalize_pattern("^[\\D]$").is_err());
    }
}
