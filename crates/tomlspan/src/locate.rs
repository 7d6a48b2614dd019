//! Key paths (`routes[1].timeout`) and where they sit in the file.
//!
//! The loader parses the file once into toml's spanned document and indexes
//! every key and array element by its path and byte spans. Deserializer
//! errors carry a span; [`SpanIndex::locate`] turns it into the path of the
//! entry it falls in, and [`SpanIndex::line_of`] turns a path (from a semantic
//! check) back into a line.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path from the document root to a key or array element.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The document root.
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path, then the key `k`.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        KeyPath(v)
    }

    /// This path, then the array index `i`.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

fn is_bare(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<document>");
        }
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    // Keys that are not bare TOML keys are quoted, as TOML would.
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One key or array element of the document.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it is.
    pub path: KeyPath,
    /// Span of the key (none for array elements).
    pub key: Option<Range<usize>>,
    /// Span of the value (for `[table]` headers: the header).
    pub value: Range<usize>,
}

/// Every entry of a parsed document, by path and span.
#[derive(Debug)]
pub struct SpanIndex {
    entries: Vec<Entry>,
    line_starts: Vec<usize>,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

impl SpanIndex {
    /// Index `root`, parsed from `text`.
    pub fn build(root: &DeTable<'_>, text: &str) -> SpanIndex {
        let mut entries = Vec::new();
        walk_table(root, &KeyPath::root(), &mut entries);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SpanIndex {
            entries,
            line_starts,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the document has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// 1-based line of a byte offset.
    pub fn line_at(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The innermost entry whose key or value span holds `span`.
    pub fn locate(&self, span: &Range<usize>) -> Option<&Entry> {
        self.entries
            .iter()
            .filter_map(|e| {
                let hit = [e.key.as_ref(), Some(&e.value)]
                    .into_iter()
                    .flatten()
                    .filter(|s| contains(s, span))
                    .map(|s| s.len())
                    .min()?;
                Some((hit, std::cmp::Reverse(e.path.0.len()), e))
            })
            .min_by_key(|(len, depth, _)| (*len, *depth))
            .map(|(_, _, e)| e)
    }

    /// The entry at exactly `path`.
    pub fn get(&self, path: &KeyPath) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.path == path)
    }

    /// The line of `path`, or of its nearest ancestor present in the file.
    pub fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut p = path.0.as_slice();
        loop {
            if p.is_empty() {
                return None;
            }
            if let Some(e) = self.get(&KeyPath(p.to_vec())) {
                let start = e.key.as_ref().map_or(e.value.start, |k| k.start);
                return Some(self.line_at(start));
            }
            p = &p[..p.len() - 1];
        }
    }
}

fn walk_table(t: &DeTable<'_>, at: &KeyPath, out: &mut Vec<Entry>) {
    for (k, v) in t.iter() {
        let path = at.key(k.get_ref());
        out.push(Entry {
            path: path.clone(),
            key: Some(k.span()),
            value: v.span(),
        });
        walk_value(v, &path, out);
    }
}

fn walk_value(v: &Spanned<DeValue<'_>>, at: &KeyPath, out: &mut Vec<Entry>) {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, at, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let path = at.index(i);
                out.push(Entry {
                    path: path.clone(),
                    key: None,
                    value: e.span(),
                });
                walk_value(e, &path, out);
            }
        }
        _ => {}
    }
}

/// Remove the entry of `doc` whose key span (or, for array elements, value
/// span) is `entry`'s. Returns whether something was removed.
pub fn remove(doc: &mut DeTable<'_>, entry: &Entry) -> bool {
    remove_in_table(doc, entry)
}

fn remove_in_table(t: &mut DeTable<'_>, entry: &Entry) -> bool {
    if let Some(key) = &entry.key
        && let Some(k) = t.keys().find(|k| &k.span() == key).cloned()
    {
        t.remove(&k);
        return true;
    }
    t.iter_mut()
        .any(|(_, v)| remove_in_value(v.get_mut(), entry))
}

fn remove_in_value(v: &mut DeValue<'_>, entry: &Entry) -> bool {
    match v {
        DeValue::Table(t) => remove_in_table(t, entry),
        DeValue::Array(a) => {
            if entry.key.is_none()
                && let Some(pos) = a.iter().position(|e| e.span() == entry.value)
            {
                // DeArray has no `remove`: rebuild it without the element.
                let mut rebuilt = toml::de::DeArray::new();
                for (i, e) in a.iter().enumerate() {
                    if i != pos {
                        rebuilt.push(e.clone());
                    }
                }
                *a = rebuilt;
                return true;
            }
            a.iter_mut().any(|e| remove_in_value(e.get_mut(), entry))
        }
        _ => false,
    }
}
