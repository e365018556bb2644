use dptq_analysis::*;
fn main() {
    let mut s = Series::new(
        "D test",
        (0..10)
            .map(|i| (i as f64, 80.0 - (i * i) as f64 * 0.6))
            .collect(),
        1,
    );
    s.err = Some(vec![2.0; 10]);
    let mut t = Series::new(
        "D train",
        (0..10)
            .map(|i| (i as f64, 82.0 - (i * i) as f64 * 0.6))
            .collect(),
        1,
    );
    t.dashed = true;
    let r = Series::new(
        "R test",
        (0..10).map(|i| (i as f64, 80.0 - i as f64 * 0.3)).collect(),
        0,
    );
    let lp = Panel::Lines(LinePanel {
        title: "before".into(),
        x_label: "layer l".into(),
        y_label: "accuracy (%)".into(),
        series: vec![s, t, r],
        y_range: Some((0.0, 100.0)),
        reference: Some((80.0, "FP".into())),
    });
    let hp = Panel::Hist(HistPanel {
        title: "layer 3 layer1.0.conv1".into(),
        lo: 0.0,
        width: 0.05,
        bars: vec![
            Bars {
                name: "FP".into(),
                heights: (0..80).map(|i| (-(i as f64) / 10.0).exp()).collect(),
                color: 0,
            },
            Bars {
                name: "Q".into(),
                heights: (0..80)
                    .map(|i| {
                        if i % 7 == 0 {
                            (-(i as f64) / 10.0).exp() * 3.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                color: 1,
            },
        ],
        note: "sparsity FP 51.2 % | Q 63.0 %".into(),
    });
    let sp = Panel::Stacked(StackedPanel {
        title: "pi_D".into(),
        x_label: "layer".into(),
        y_label: "share".into(),
        categories: (1..10).map(|i| i.to_string()).collect(),
        stacks: (3..11)
            .map(|b| {
                (
                    format!("{b} b"),
                    (0..9).map(|l| ((b + l) % 3) as f64).collect(),
                )
            })
            .collect(),
    });
    let fig = Figure::new("scratch", "Scratch figure", vec![lp, hp, sp], 3);
    let saved = fig.save(std::path::Path::new("/tmp/dptq_scratch")).unwrap();
    println!("{saved:?}");
}
