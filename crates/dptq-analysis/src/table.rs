//! Tables as data: written as CSV for tools and as Markdown/HTML for people.

use std::path::Path;

use crate::error::{Error, Result};

/// A titled table of text cells (numbers already formatted).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    /// File stem of the CSV (`table2_transitory`).
    pub name: String,
    /// Caption.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows, each with one cell per header.
    pub rows: Vec<Vec<String>>,
}

/// A percentage with two decimals (`87.92`).
pub fn pct(x: f64) -> String {
    format!("{x:.2}")
}

/// A signed change with two decimals (`+0.03`, `-52.10`).
pub fn delta(x: f64) -> String {
    format!("{x:+.2}")
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Table {
    /// A table with these headers and no row yet.
    pub fn new(name: impl Into<String>, title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            name: name.into(),
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; an error when it has another number of cells than headers.
    pub fn push(&mut self, row: Vec<String>) -> Result<()> {
        if row.len() != self.headers.len() {
            return Err(Error::invalid(
                "table row",
                format!(
                    "{}: {} cells for {} columns ({:?})",
                    self.name,
                    row.len(),
                    self.headers.len(),
                    self.headers
                ),
            ));
        }
        self.rows.push(row);
        Ok(())
    }

    /// RFC 4180 CSV: a header line, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = line.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// A GitHub-flavoured Markdown table under a bold caption.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("**{}**\n\n", md_cell(&self.title));
        let head: Vec<String> = self.headers.iter().map(|h| md_cell(h)).collect();
        out.push_str(&format!("| {} |\n", head.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(self.headers.len())));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// An HTML `<table>` with a caption.
    pub fn to_html(&self) -> String {
        let mut out = format!(
            "<table>\n<caption>{}</caption>\n<thead><tr>",
            html_escape(&self.title)
        );
        for h in &self.headers {
            out.push_str(&format!("<th>{}</th>", html_escape(h)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for c in row {
                out.push_str(&format!("<td>{}</td>", html_escape(c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    /// Writes `<dir>/<name>.csv`.
    pub fn save_csv(&self, dir: &Path) -> Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(format!("{}.csv", self.name));
        std::fs::write(&path, self.to_csv()).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    html_escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new("t", "A | B", &["name", "value"]);
        t.push(vec!["plain".into(), "1.00".into()]).unwrap();
        t.push(vec!["with, comma \"q\"".into(), "<2>".into()])
            .unwrap();
        t
    }

    #[test]
    fn csv_quotes_commas_and_doubles_quotes() {
        assert_eq!(
            sample().to_csv(),
            "name,value\nplain,1.00\n\"with, comma \"\"q\"\"\",<2>\n"
        );
    }

    #[test]
    fn markdown_escapes_pipes_and_has_one_separator_per_column() {
        let md = sample().to_markdown();
        assert!(md.starts_with("**A \\| B**\n\n| name | value |\n|---|---|\n"));
        assert_eq!(md.lines().count(), 6);
    }

    #[test]
    fn html_escapes_markup() {
        let html = sample().to_html();
        assert!(html.contains("<td>&lt;2&gt;</td>"));
        assert!(html.contains("<caption>A | B</caption>"));
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused() {
        let mut t = Table::new("t", "t", &["a", "b"]);
        assert!(
            t.push(vec!["1".into()])
                .unwrap_err()
                .to_string()
                .contains("1 cells for 2 columns")
        );
    }

    #[test]
    fn numbers_format_with_two_decimals_and_signs() {
        assert_eq!(pct(87.916), "87.92");
        assert_eq!(delta(-52.1), "-52.10");
        assert_eq!(delta(0.03), "+0.03");
    }
}
