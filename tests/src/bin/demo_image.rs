//! `shoal-demo-image OUT.tar [NAME]`: writes the busybox-based demo image (an OCI image-layout
//! tar) that the quickstart imports into each agent.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "shoal-demo.tar".into()));
    let name = args.next().unwrap_or_else(|| "shoal-demo:latest".into());
    let dir = out
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let built = shoal_tests::image::build_busybox_image(
        &dir,
        &shoal_tests::image::ImageOptions::new(&name),
    )?;
    std::fs::rename(&built.path, &out)?;
    println!(
        "{} ({name}, manifest {})",
        out.display(),
        built.manifest_digest
    );
    Ok(())
}
