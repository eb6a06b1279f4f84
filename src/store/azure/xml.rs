//! The small XML readers the Blob service's answers need: one element's text, entities, and the
//! children of a `<Metadata>` element. The service's XML is flat and predictable; nothing here is
//! a general parser.

use std::collections::BTreeMap;

/// The decoded text of the first `<tag>…</tag>` in `xml`.
#[must_use]
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml_unescape(&xml[start..end]))
}

/// Replaces the five XML entities and numeric character references.
#[must_use]
pub fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        if let Some(c) = decoded {
            out.push(c);
            rest = &rest[end + 1..];
        } else {
            out.push('&');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The children of `<Metadata>`: `<name>value</name>` or an empty `<name />`.
pub fn parse_metadata(blob: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(start) = blob.find("<Metadata>") else {
        return out;
    };
    let body = &blob[start + "<Metadata>".len()..];
    let body = &body[..body.find("</Metadata>").unwrap_or(body.len())];
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let tag = &after[..close];
        if let Some(name) = tag.strip_suffix('/') {
            out.insert(name.trim().to_ascii_lowercase(), String::new());
            rest = &after[close + 1..];
            continue;
        }
        let value_start = &after[close + 1..];
        let end_tag = format!("</{tag}>");
        let Some(end) = value_start.find(&end_tag) else {
            break;
        };
        out.insert(
            tag.trim().to_ascii_lowercase(),
            xml_unescape(&value_start[..end]),
        );
        rest = &value_start[end + end_tag.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_entities() {
        let xml = "<Error><Code>ContainerNotFound</Code><Message>The &quot;c&quot; &amp; co.\nRequestId:1</Message></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("ContainerNotFound"));
        assert_eq!(
            xml_unescape("a&lt;b&gt;&#65;&#x42;&bogus;&"),
            "a<b>AB&bogus;&"
        );
    }

    #[test]
    fn metadata_children() {
        let blob = "<Name>x</Name><Metadata><owner>a &amp; b</owner><Empty /></Metadata>";
        let found = parse_metadata(blob);
        assert_eq!(found.get("owner").map(String::as_str), Some("a & b"));
        assert_eq!(found.get("empty").map(String::as_str), Some(""));
        assert!(parse_metadata("<Name>x</Name>").is_empty());
    }
}
