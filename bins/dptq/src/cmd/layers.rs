//! `dptq layers`: the quantizable activations of an architecture (the `L` columns of every
//! bit plan), as TSV on stdout.

/// List an architecture's quantizable layers: index, timm module name, input shape.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture, e.g. resnet18.
    #[arg(long, required_unless_present = "list")]
    arch: Option<String>,
    /// Classes of the head (changes no layer name).
    #[arg(long, default_value_t = 1000)]
    num_classes: usize,
    /// Image side for the input shapes (one forward pass); 0 skips them.
    #[arg(long, default_value_t = 224)]
    px: usize,
    /// List the registered architectures instead.
    #[arg(long)]
    list: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        for name in dptq_models::ARCH_NAMES {
            println!("{name}");
        }
        return Ok(());
    }
    let arch = args
        .arch
        .ok_or_else(|| anyhow::anyhow!("--arch is required"))?;
    let px = (args.px > 0).then_some(args.px);
    let layers = dptq_models::describe_layers(&arch, args.num_classes, px)?;
    println!("index\tname\tin_shape");
    for l in &layers {
        let shape = l
            .in_shape
            .as_ref()
            .map_or("-".to_string(), |s| format!("{s:?}"));
        println!("{}\t{}\t{}", l.index, l.name, shape);
    }
    tracing::info!("{arch}: L = {}", layers.len());
    Ok(())
}
