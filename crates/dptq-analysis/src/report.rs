//! The analysis as documents: a Markdown section spliced into the run's `report.md`
//! (between markers, so that a rerun replaces it) and one self-contained HTML page with
//! the figures inlined as SVG.

use std::path::Path;

use crate::error::{Error, Result};
use crate::plot::SavedFigure;
use crate::table::{Table, escape_html};

/// First line of the analysis section in `report.md`.
pub const BEGIN_MARKER: &str = "<!-- dptq-analysis:begin -->";
/// Last line of the analysis section in `report.md`.
pub const END_MARKER: &str = "<!-- dptq-analysis:end -->";

/// A figure saved to disk, with its SVG text for inlining.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFigure {
    /// Where the files are.
    pub saved: SavedFigure,
    /// The SVG document.
    pub svg: String,
}

/// One titled part of a report: paragraphs, tables, figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Plain-text paragraphs (inline `code` allowed).
    pub paragraphs: Vec<String>,
    /// Tables, in order.
    pub tables: Vec<Table>,
    /// Figures, in order.
    pub figures: Vec<ReportFigure>,
    /// Tables written only as CSV: `(file stem, title)`.
    pub data_files: Vec<(String, String)>,
}

impl Section {
    /// An empty section titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Default::default()
        }
    }
}

/// A whole report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Title.
    pub title: String,
    /// Paragraphs under the title.
    pub intro: Vec<String>,
    /// The sections.
    pub sections: Vec<Section>,
}

fn inline_code_html(text: &str) -> String {
    // Alternate segments between backticks are code.
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape_html(part))
            } else {
                escape_html(part)
            }
        })
        .collect()
}

impl Report {
    /// Markdown with `##` headings (`level` 2) or deeper; figures are linked as
    /// `<image_prefix>/<name>.png` (relative to the Markdown file).
    pub fn to_markdown(&self, level: usize, image_prefix: &str) -> String {
        let h = "#".repeat(level.max(1));
        let mut out = format!("{h} {}\n\n", self.title);
        for p in &self.intro {
            out.push_str(p);
            out.push_str("\n\n");
        }
        for s in &self.sections {
            out.push_str(&format!("{h}# {}\n\n", s.title));
            for p in &s.paragraphs {
                out.push_str(p);
                out.push_str("\n\n");
            }
            for t in &s.tables {
                out.push_str(&t.to_markdown());
                out.push_str(&format!("\n(CSV: `{image_prefix}/{}.csv`)\n\n", t.name));
            }
            for (name, title) in &s.data_files {
                out.push_str(&format!("{title}: `{image_prefix}/{name}.csv`.\n\n"));
            }
            for f in &s.figures {
                out.push_str(&format!(
                    "![{}]({image_prefix}/{}.png)\n\n",
                    f.saved.title.replace(['[', ']'], ""),
                    f.saved.name
                ));
            }
        }
        out
    }

    /// One self-contained HTML page: inline CSS, tables, SVG figures.
    pub fn to_html(&self) -> String {
        let mut out =
            String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str(&format!("<title>{}</title>\n", escape_html(&self.title)));
        out.push_str(
            "<style>\nbody{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1320px;margin:2em auto;padding:0 1em;color:#222}\n\
             table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\n\
             caption{text-align:left;font-weight:bold;padding:0.3em 0}\n\
             th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}\n\
             th{background:#f3f3f3}\ntd:first-child,th:first-child{text-align:left}\n\
             figure{margin:1.5em 0}\nfigure svg{max-width:100%;height:auto}\n\
             code{background:#f3f3f3;padding:0 0.2em}\n</style>\n</head>\n<body>\n",
        );
        out.push_str(&format!("<h1>{}</h1>\n", escape_html(&self.title)));
        for p in &self.intro {
            out.push_str(&format!("<p>{}</p>\n", inline_code_html(p)));
        }
        for (i, s) in self.sections.iter().enumerate() {
            out.push_str(&format!("<h2 id=\"s{i}\">{}</h2>\n", escape_html(&s.title)));
            for p in &s.paragraphs {
                out.push_str(&format!("<p>{}</p>\n", inline_code_html(p)));
            }
            for t in &s.tables {
                out.push_str(&t.to_html());
            }
            for (name, title) in &s.data_files {
                out.push_str(&format!(
                    "<p>{}: <a href=\"{name}.csv\"><code>{name}.csv</code></a></p>\n",
                    escape_html(title)
                ));
            }
            for f in &s.figures {
                out.push_str("<figure>\n");
                out.push_str(strip_xml_prolog(&f.svg));
                out.push_str(&format!(
                    "\n<figcaption>{}</figcaption>\n</figure>\n",
                    escape_html(&f.saved.title)
                ));
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }
}

fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Replaces the text between [`BEGIN_MARKER`] and [`END_MARKER`] in `existing` with
/// `section` (markers kept), or appends the marked section when there is none.
pub fn splice_section(existing: &str, section: &str) -> String {
    let block = format!("{BEGIN_MARKER}\n{}\n{END_MARKER}\n", section.trim_end());
    match (existing.find(BEGIN_MARKER), existing.find(END_MARKER)) {
        (Some(b), Some(e)) if e > b => {
            let after = &existing[e + END_MARKER.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{block}{after}", &existing[..b])
        }
        _ => {
            let mut out = existing.to_string();
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            out.push_str(&block);
            out
        }
    }
}

/// Splices `section` into the Markdown file at `path` (created when absent).
pub fn splice_into_file(path: &Path, section: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    std::fs::write(path, splice_section(&existing, section)).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_appends_once_then_replaces_in_place() {
        let base = "# Run\n\nTable 1\n";
        let once = splice_section(base, "## Analysis v1");
        assert!(
            once.starts_with("# Run\n\nTable 1\n\n<!-- dptq-analysis:begin -->\n## Analysis v1\n")
        );
        let with_tail = format!("{once}\n## Later notes\n");
        let twice = splice_section(&with_tail, "## Analysis v2");
        assert!(!twice.contains("v1"));
        assert_eq!(twice.matches(BEGIN_MARKER).count(), 1);
        assert!(twice.contains("## Analysis v2\n<!-- dptq-analysis:end -->"));
        assert!(twice.ends_with("## Later notes\n"));
    }

    #[test]
    fn html_escapes_text_and_marks_inline_code() {
        let r = Report {
            title: "A <b>".into(),
            intro: vec!["run `dptq analyze` & see".into()],
            sections: vec![Section::new("S")],
        };
        let html = r.to_html();
        assert!(html.contains("<h1>A &lt;b&gt;</h1>"));
        assert!(html.contains("run <code>dptq analyze</code> &amp; see"));
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn markdown_links_figures_and_csvs_under_the_prefix() {
        let mut s = Section::new("Sweeps");
        s.tables.push(Table::new("t1", "T", &["a"]));
        s.figures.push(ReportFigure {
            saved: SavedFigure {
                name: "fig2".into(),
                title: "Fig. 2 [D]".into(),
                svg: "x.svg".into(),
                png: "x.png".into(),
            },
            svg: "<?xml?><svg></svg>".into(),
        });
        let r = Report {
            title: "Analysis".into(),
            intro: vec![],
            sections: vec![s],
        };
        let md = r.to_markdown(2, "analysis");
        assert!(md.contains("## Analysis\n"));
        assert!(md.contains("### Sweeps\n"));
        assert!(md.contains("![Fig. 2 D](analysis/fig2.png)"));
        assert!(md.contains("`analysis/t1.csv`"));
        assert!(r.to_html().contains("<figure>\n<svg></svg>"));
    }
}
