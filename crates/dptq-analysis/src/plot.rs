//! Figures as data, drawn with `plotters` to SVG (text) and PNG (the RGB buffer of the
//! bitmap backend, encoded with `image`).
//!
//! A [`Figure`] is a grid of panels: line panels (sweeps, corruption curves with error
//! bars), overlaid histograms (activations, FP vs quantized) and stacked bars (bit-width
//! choices per layer). Text uses DejaVu Sans, embedded and registered with plotters as
//! `sans-serif`, so that PNGs carry their labels on machines without fonts.

use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use ab_glyph::{Font, FontRef, ScaleFont, point};
use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use crate::error::{Error, Result};

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `fixtures/fonts/`).
static FONT: &[u8] = include_bytes!("../../../fixtures/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The embedded file is a valid TrueType font (a test draws text with it).
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// A colour-blind-safe palette (Okabe–Ito), indexed by [`Series::color`].
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One curve of a line panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Half-height of an error bar at each point (same length as `points`), if any.
    pub err: Option<Vec<f64>>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Dashed line (e.g. the training split next to the solid test split).
    pub dashed: bool,
}

impl Series {
    /// A solid curve without error bars.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Self {
            name: name.into(),
            points,
            err: None,
            color,
            dashed: false,
        }
    }
}

/// Curves on shared axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePanel {
    /// Panel caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
    /// Y range; `None` fits the data (error bars included) with a margin.
    pub y_range: Option<(f64, f64)>,
    /// A horizontal reference line `(y, label)` drawn dotted (e.g. the FP accuracy).
    pub reference: Option<(f64, String)>,
}

/// One histogram of an overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct Bars {
    /// Legend entry.
    pub name: String,
    /// Height of each bin.
    pub heights: Vec<f64>,
    /// Index into [`PALETTE`].
    pub color: usize,
}

/// Histograms over the same bins, overlaid with transparency.
#[derive(Clone, Debug, PartialEq)]
pub struct HistPanel {
    /// Panel caption.
    pub title: String,
    /// Left edge of the first bin.
    pub lo: f64,
    /// Bin width.
    pub width: f64,
    /// The histograms (same number of bins).
    pub bars: Vec<Bars>,
    /// A line printed under the axes (the sparsity measures).
    pub note: String,
}

/// Bars stacked per category (e.g. the share of each bit-width at each layer).
#[derive(Clone, Debug, PartialEq)]
pub struct StackedPanel {
    /// Panel caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The category under each bar.
    pub categories: Vec<String>,
    /// `(legend entry, height per category)`, stacked bottom to top.
    pub stacks: Vec<(String, Vec<f64>)>,
}

/// A panel of a figure.
#[derive(Clone, Debug, PartialEq)]
pub enum Panel {
    /// Curves.
    Lines(LinePanel),
    /// Overlaid histograms.
    Hist(HistPanel),
    /// Stacked bars.
    Stacked(StackedPanel),
}

/// A grid of panels saved as `<name>.svg` and `<name>.png`.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File stem.
    pub name: String,
    /// Title over the grid.
    pub title: String,
    /// Panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row (at least 1).
    pub cols: usize,
    /// Pixel size of one panel (default 420 x 300).
    pub panel_size: (u32, u32),
    /// One legend for the whole figure, drawn under the title; when non-empty the panels
    /// draw none (default empty: each panel labels its own series).
    pub legend: Vec<LegendEntry>,
}

/// An entry of a figure-level legend.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    /// Text.
    pub name: String,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Drawn as a dashed line (else solid; `filled` draws a box).
    pub dashed: bool,
    /// Drawn as a filled box (bars).
    pub filled: bool,
}

impl LegendEntry {
    /// A solid-line entry.
    pub fn line(name: impl Into<String>, color: usize) -> Self {
        Self {
            name: name.into(),
            color,
            dashed: false,
            filled: false,
        }
    }
}

/// Where a figure was saved.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedFigure {
    /// File stem.
    pub name: String,
    /// The figure's title.
    pub title: String,
    /// `<dir>/<name>.svg`.
    pub svg: PathBuf,
    /// `<dir>/<name>.png`.
    pub png: PathBuf,
}

const TITLE_HEIGHT: u32 = 36;
const LEGEND_HEIGHT: u32 = 22;

impl Figure {
    /// A figure of `panels`, `cols` per row, 420 x 300 pixels each.
    pub fn new(
        name: impl Into<String>,
        title: impl Into<String>,
        panels: Vec<Panel>,
        cols: usize,
    ) -> Self {
        Self {
            name: name.into(),
            title: title.into(),
            panels,
            cols: cols.max(1),
            panel_size: (420, 300),
            legend: Vec::new(),
        }
    }

    /// Pixel size of the whole figure.
    pub fn size(&self) -> (u32, u32) {
        let cols = self.cols.max(1).min(self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(self.cols.max(1)).max(1);
        (
            self.panel_size.0 * cols as u32,
            self.panel_size.1 * rows as u32 + self.title_height(),
        )
    }

    fn title_height(&self) -> u32 {
        if self.legend.is_empty() {
            TITLE_HEIGHT
        } else {
            TITLE_HEIGHT + LEGEND_HEIGHT
        }
    }

    fn check(&self) -> Result<()> {
        if self.panels.is_empty() {
            return Err(Error::plot(&self.name, "no panel to draw"));
        }
        for p in &self.panels {
            match p {
                Panel::Lines(lp) => {
                    for s in &lp.series {
                        if let Some(err) = &s.err
                            && err.len() != s.points.len()
                        {
                            return Err(Error::plot(
                                &self.name,
                                format!(
                                    "series {:?}: {} error bars for {} points",
                                    s.name,
                                    err.len(),
                                    s.points.len()
                                ),
                            ));
                        }
                    }
                }
                Panel::Hist(hp) => {
                    if !(hp.width > 0.0 && hp.width.is_finite()) {
                        return Err(Error::plot(&self.name, format!("bin width {}", hp.width)));
                    }
                    let n = hp.bars.first().map_or(0, |b| b.heights.len());
                    if hp.bars.iter().any(|b| b.heights.len() != n) {
                        return Err(Error::plot(
                            &self.name,
                            "histograms with different bin counts",
                        ));
                    }
                }
                Panel::Stacked(sp) => {
                    if sp
                        .stacks
                        .iter()
                        .any(|(_, h)| h.len() != sp.categories.len())
                    {
                        return Err(Error::plot(
                            &self.name,
                            format!("stacks must have {} heights", sp.categories.len()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        self.check()?;
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| Error::plot(&self.name, e))?;
            root.present().map_err(|e| Error::plot(&self.name, e))?;
        }
        Ok(svg)
    }

    /// The figure as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        self.check()?;
        register_font();
        let (w, h) = self.size();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        {
            let root = PngBackend::new(BitMapBackend::with_buffer(&mut rgb, (w, h)))
                .map_err(|e| Error::plot(&self.name, e))?
                .into_drawing_area();
            self.draw(&root).map_err(|e| Error::plot(&self.name, e))?;
            root.present().map_err(|e| Error::plot(&self.name, e))?;
        }
        let img = image::RgbImage::from_raw(w, h, rgb)
            .ok_or_else(|| Error::plot(&self.name, "pixel buffer of the wrong size"))?;
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::plot(&self.name, e))?;
        Ok(png)
    }

    /// Writes `<dir>/<name>.svg` and `<dir>/<name>.png`.
    pub fn save(&self, dir: &Path) -> Result<SavedFigure> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let svg = dir.join(format!("{}.svg", self.name));
        let png = dir.join(format!("{}.png", self.name));
        std::fs::write(&svg, self.to_svg()?).map_err(|e| Error::io(&svg, e))?;
        std::fs::write(&png, self.to_png()?).map_err(|e| Error::io(&png, e))?;
        Ok(SavedFigure {
            name: self.name.clone(),
            title: self.title.clone(),
            svg,
            png,
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (_, h) = self.size();
        let (top, body) = root.split_vertically(self.title_height());
        top.draw(&Text::new(
            self.title.clone(),
            (10, 8),
            (FAMILY, 20).into_font().color(&BLACK),
        ))?;
        let mut x = 14i32;
        let y = TITLE_HEIGHT as i32 + 4;
        for e in &self.legend {
            let c = color(e.color);
            if e.filled {
                top.draw(&Rectangle::new(
                    [(x, y + 2), (x + 14, y + 12)],
                    c.mix(0.6).filled(),
                ))?;
            } else if e.dashed {
                for k in 0..3 {
                    top.draw(&PathElement::new(
                        vec![(x + 8 * k, y + 7), (x + 8 * k + 5, y + 7)],
                        c.stroke_width(2),
                    ))?;
                }
            } else {
                top.draw(&PathElement::new(
                    vec![(x, y + 7), (x + 22, y + 7)],
                    c.stroke_width(2),
                ))?;
            }
            top.draw(&Text::new(
                e.name.clone(),
                (x + 28, y),
                (FAMILY, 13).into_font().color(&BLACK),
            ))?;
            let width = top
                .estimate_text_size(&e.name, &(FAMILY, 13).into_text_style(&top))
                .map(|(w, _)| w as i32)
                .unwrap_or(8 * e.name.len() as i32);
            x += 28 + width + 22;
        }
        let own_legend = self.legend.is_empty();
        let rows = self.panels.len().div_ceil(self.cols);
        let _ = h;
        let areas = body.split_evenly((rows, self.cols));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            match panel {
                Panel::Lines(p) => draw_lines(p, area, own_legend)?,
                Panel::Hist(p) => draw_hist(p, area, own_legend)?,
                Panel::Stacked(p) => draw_stacked(p, area, own_legend)?,
            }
        }
        Ok(())
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A tick label: up to 3 decimals, trailing zeros dropped (`80`, `0.25`).
fn trim_number(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn draw_lines<DB: DrawingBackend>(
    p: &LinePanel,
    area: &DrawingArea<DB, Shift>,
    own_legend: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (x_lo, x_hi) = padded(x_lo, x_hi);
    let (y_lo, y_hi) = match p.y_range {
        Some(r) => r,
        None => {
            let mut lo = f64::INFINITY;
            let mut hi = f64::NEG_INFINITY;
            for s in &p.series {
                for (i, &(_, y)) in s.points.iter().enumerate() {
                    let e = s.err.as_ref().map_or(0.0, |e| e[i]);
                    lo = lo.min(y - e);
                    hi = hi.max(y + e);
                }
            }
            if let Some((r, _)) = &p.reference {
                lo = lo.min(*r);
                hi = hi.max(*r);
            }
            padded(lo, hi)
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(46)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    let integer_x = p
        .series
        .iter()
        .all(|s| s.points.iter().all(|q| q.0.fract() == 0.0));
    let x_format = move |x: &f64| {
        if integer_x {
            if x.fract().abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        } else {
            trim_number(*x)
        }
    };
    let y_format = |y: &f64| trim_number(*y);
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if let Some((y, label)) = &p.reference {
        let style = RGBColor(120, 120, 120).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, *y), (x_hi, *y)],
                3,
                3,
                style,
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    for s in &p.series {
        let c = color(s.color);
        let style = c.stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))?
        };
        drawn
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(
            s.points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 2, c.filled())),
        )?;
        if let Some(err) = &s.err {
            // Vertical bar with caps; the cap half-width is 1 % of the x range.
            let cap = 0.01 * (x_hi - x_lo);
            for (&(x, y), &e) in s.points.iter().zip(err) {
                let style = c.stroke_width(1);
                chart.draw_series([
                    PathElement::new(vec![(x, y - e), (x, y + e)], style),
                    PathElement::new(vec![(x - cap, y - e), (x + cap, y - e)], style),
                    PathElement::new(vec![(x - cap, y + e), (x + cap, y + e)], style),
                ])?;
            }
        }
    }
    if own_legend {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 10))
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    Ok(())
}

fn draw_hist<DB: DrawingBackend>(
    p: &HistPanel,
    area: &DrawingArea<DB, Shift>,
    own_legend: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let bins = p.bars.first().map_or(0, |b| b.heights.len()).max(1);
    let x_hi = p.lo + p.width * bins as f64;
    let y_hi = p
        .bars
        .iter()
        .flat_map(|b| b.heights.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let (plot, note) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(18));
    let mut chart = ChartBuilder::on(&plot)
        .caption(&p.title, (FAMILY, 13))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(40)
        .build_cartesian_2d(p.lo..x_hi, 0.0..y_hi)?;
    chart
        .configure_mesh()
        .label_style((FAMILY, 9))
        .x_labels(5)
        .y_labels(4)
        .x_label_formatter(&|x| trim_number(*x))
        .y_label_formatter(&|y| trim_number(*y))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for b in &p.bars {
        let c = color(b.color);
        chart
            .draw_series(
                b.heights
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h > 0.0)
                    .map(|(i, &h)| {
                        let x0 = p.lo + i as f64 * p.width;
                        Rectangle::new([(x0, 0.0), (x0 + p.width, h)], c.mix(0.45).filled())
                    }),
            )?
            .label(b.name.as_str())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 4), (x + 10, y + 4)], c.mix(0.6).filled())
            });
    }
    if own_legend {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 9))
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    note.draw(&Text::new(
        p.note.clone(),
        (8, 2),
        (FAMILY, 11).into_font().color(&BLACK),
    ))?;
    Ok(())
}

fn draw_stacked<DB: DrawingBackend>(
    p: &StackedPanel,
    area: &DrawingArea<DB, Shift>,
    own_legend: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = p.categories.len().max(1);
    let mut totals = vec![0.0f64; n];
    for (_, h) in &p.stacks {
        for (t, v) in totals.iter_mut().zip(h) {
            *t += v.max(0.0);
        }
    }
    let y_hi = totals.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(46)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0.0..y_hi)?;
    let cats = p.categories.clone();
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .label_style((FAMILY, 10))
        .axis_desc_style((FAMILY, 12))
        .x_labels(n.min(24))
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                cats[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| trim_number(*y))
        .disable_x_mesh()
        .draw()?;
    let mut base = vec![0.0f64; n];
    for (k, (name, heights)) in p.stacks.iter().enumerate() {
        let c = color(k);
        let rects: Vec<_> = heights
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                let y0 = base[i];
                base[i] += h.max(0.0);
                Rectangle::new(
                    [(i as f64 - 0.38, y0), (i as f64 + 0.38, base[i])],
                    c.filled(),
                )
            })
            .collect();
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], c.filled()));
    }
    if own_legend {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 10))
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// The bitmap backend with its text drawn by [`draw_glyphs`]. plotters' own bitmap text
/// rounds each glyph's vertical offset toward zero, which lifts small glyphs by a pixel or
/// two at label sizes: a '.' in "0.15" or "layer1.0.conv1" reads as a '·'. Everything but
/// text goes to [`BitMapBackend`] unchanged; text keeps plotters' layout (the same box and
/// anchors, so labels stay where plotters puts them).
struct PngBackend<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
}

impl<'a> PngBackend<'a> {
    fn new(inner: BitMapBackend<'a>) -> std::result::Result<Self, ab_glyph::InvalidFont> {
        static PARSED: OnceLock<std::result::Result<FontRef<'static>, ab_glyph::InvalidFont>> =
            OnceLock::new();
        let font = PARSED
            .get_or_init(|| FontRef::try_from_slice(FONT))
            .as_ref()
            .map_err(|e| *e)?;
        Ok(Self { inner, font })
    }
}

type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

impl DrawingBackend for PngBackend<'_> {
    type ErrorType = BitmapError;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.blit_bitmap(pos, (iw, ih), src)
    }

    /// plotters' default text placement (layout box, anchor, rotation) with the glyphs of
    /// [`draw_glyphs`].
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        draw_glyphs(self.font, style.size() as f32, text, |x, y, coverage| {
            let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if result.is_ok() && x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                let shade = BackendColor {
                    alpha: color.alpha * f64::from(coverage),
                    rgb: color.rgb,
                };
                result = self.inner.draw_pixel((x, y), shade);
            }
        });
        result
    }
}

/// Rasterises `text` at `size` pixels with its baseline at `size / 2` (plotters' convention),
/// each glyph at its sub-pixel pen position and on the one baseline; calls `put(x, y,
/// coverage)` for every covered pixel.
fn draw_glyphs(font: &FontRef<'_>, size: f32, text: &str, mut put: impl FnMut(i32, i32, f32)) {
    let scaled = font.as_scaled(size);
    let mut caret = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(size, point(caret, size / 2.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                put(
                    bounds.min.x as i32 + x as i32,
                    bounds.min.y as i32 + y as i32,
                    coverage,
                )
            });
        }
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_figure() -> Figure {
        let mut s = Series::new("test", vec![(0.0, 80.0), (1.0, 70.0), (2.0, 20.0)], 0);
        s.err = Some(vec![1.0, 2.0, 3.0]);
        Figure::new(
            "sweep",
            "Layer sweep",
            vec![Panel::Lines(LinePanel {
                title: "before".into(),
                x_label: "layer".into(),
                y_label: "accuracy (%)".into(),
                series: vec![s],
                y_range: None,
                reference: Some((80.0, "FP".into())),
            })],
            1,
        )
    }

    /// Lowest covered row of `text` drawn alone at pen position 0.
    fn bottom_row(text: &str, size: f32) -> i32 {
        let font = PngBackend::new(BitMapBackend::with_buffer(&mut [0; 3], (1, 1)))
            .unwrap()
            .font;
        let mut bottom = i32::MIN;
        draw_glyphs(font, size, text, |_, y, coverage| {
            if coverage > 0.1 {
                bottom = bottom.max(y);
            }
        });
        assert!(bottom > i32::MIN, "{text:?} drew nothing at size {size}");
        bottom
    }

    #[test]
    fn small_glyphs_sit_on_the_baseline_of_the_digits() {
        // plotters' bitmap text lifted '.' and ':' by up to two pixels at label sizes.
        for size in [9.0, 10.0, 11.0, 13.0, 20.0] {
            let digit = bottom_row("0", size);
            for small in [".", ":", ","] {
                let b = bottom_row(small, size);
                // ',' descends below the baseline; '.' and ':' end on it, as the digit does
                // (give or take the digit's one-pixel overshoot below it).
                let baseline = (size / 2.0) as i32;
                let ok = if small == "," {
                    b >= digit
                } else {
                    (b - digit).abs() <= 1 && (b - baseline).abs() <= 1
                };
                assert!(ok, "size {size}: {small:?} ends at row {b}, '0' at {digit}");
            }
        }
    }

    #[test]
    fn svg_holds_the_labels_as_text() {
        let svg = line_figure().to_svg().unwrap();
        assert!(svg.starts_with("<svg"));
        for label in ["Layer sweep", "accuracy (%)", "before", "test"] {
            assert!(svg.contains(label), "missing {label:?}");
        }
    }

    #[test]
    fn png_decodes_to_the_figure_size_and_has_dark_text_pixels_in_the_title() {
        let fig = line_figure();
        let png = fig.to_png().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), fig.size());
        // The title band is white except for the rendered glyphs: the font was found.
        let dark = (0..img.width())
            .flat_map(|x| (0..TITLE_HEIGHT).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 50, "only {dark} dark pixels in the title band");
    }

    #[test]
    fn mismatched_error_bars_are_an_error_not_a_panic() {
        let mut fig = line_figure();
        if let Panel::Lines(p) = &mut fig.panels[0] {
            p.series[0].err = Some(vec![1.0]);
        }
        assert!(
            fig.to_svg()
                .unwrap_err()
                .to_string()
                .contains("1 error bars for 3 points")
        );
        assert!(Figure::new("empty", "t", vec![], 2).to_png().is_err());
    }

    #[test]
    fn histogram_and_stacked_panels_render() {
        let fig = Figure::new(
            "mixed",
            "Mixed",
            vec![
                Panel::Hist(HistPanel {
                    title: "layer 1".into(),
                    lo: 0.0,
                    width: 0.5,
                    bars: vec![
                        Bars {
                            name: "FP".into(),
                            heights: vec![0.0, 0.5, 0.5],
                            color: 0,
                        },
                        Bars {
                            name: "Q".into(),
                            heights: vec![0.0, 0.9, 0.1],
                            color: 1,
                        },
                    ],
                    note: "sparsity FP 50.0 % | Q 60.0 %".into(),
                }),
                Panel::Stacked(StackedPanel {
                    title: "bits".into(),
                    x_label: "layer".into(),
                    y_label: "share".into(),
                    categories: vec!["1".into(), "2".into()],
                    stacks: vec![
                        ("3 b".into(), vec![0.5, 1.0]),
                        ("4 b".into(), vec![0.5, 0.0]),
                    ],
                }),
            ],
            2,
        );
        let svg = fig.to_svg().unwrap();
        assert!(svg.contains("sparsity FP 50.0 %"));
        assert!(svg.contains("3 b"));
        assert_eq!(fig.size(), (840, 336));
        assert!(!fig.to_png().unwrap().is_empty());
    }
}
