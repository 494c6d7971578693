//! The `explain` and `evaluate` examples as a user runs them: the default jobs, and one-line errors
//! for bad input.
//!
//! The example binary is built by `cargo test --all-targets` (the README's test command).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example binary, built (or found up to date) by Cargo itself: `cargo test --all-targets`
/// compiles examples as test harnesses, so the runnable one is built here with the same
/// profile and target folder.
fn binary(example: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    {
        {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "--example", example]).current_dir(env!("CARGO_MANIFEST_DIR"));
            cmd.env("CARGO_TARGET_DIR", target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "building the {example} example failed");
            let bin = profile_dir.join("examples").join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.is_file(), "{} is missing after the build", bin.display());
            bin
        }
    }
}

fn run(args: &[&str]) -> Output {
    run_example("explain", args)
}

fn run_example(example: &str, args: &[&str]) -> Output {
    Command::new(binary(example)).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rap-attrib-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected a failure, got success: {stderr}");
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr.contains("panicked"), "a panic reached the user: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    stderr
}

#[test]
fn the_default_job_explains_chelsea_and_writes_a_panel() {
    let out_dir = tmp().join("default");
    let out = run(&["--out", out_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1.  285 Egyptian cat"), "{stdout}");
    // RAP on a convolutional head conserves the one-hot start: the sum is 1 up to float32.
    let sum: f64 = stdout.split("relevance sum ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((sum - 1.0).abs() < 1e-5, "{stdout}");
    let panel = out_dir.join("chelsea_rap_vs_lrp-a1b0.png");
    assert!(stdout.contains(&panel.display().to_string()), "{stdout}");
    let img = image::open(&panel).unwrap();
    // photo | RAP | LRP, each 224 wide, with two 4-pixel gaps.
    // photo | RAP | LRP-α1β0, 4-pixel gaps, the colour scale, the title strip.
    let (scale, title) = (rap_attrib::viz::PANEL_SCALE_WIDTH, rap_attrib::viz::PANEL_TITLE_HEIGHT);
    assert_eq!((img.width(), img.height()), (3 * 224 + 8 + scale, 224 + title));
}

#[test]
fn several_images_and_a_chosen_target() {
    let out_dir = tmp().join("many");
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images");
    let out = run(&[
        "--image",
        images.to_str().unwrap(),
        "--target",
        "281",
        "--compare",
        "none",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("explained class 281 (tabby, tabby cat)"), "{stdout}");
    assert!(out_dir.join("chelsea_rap.png").exists() && out_dir.join("coffee_rap.png").exists());
}

#[test]
fn help_describes_every_option() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--model", "--weights", "--image", "--rule", "--target", "--out", "--device"] {
        assert!(text.contains(opt), "--help lacks {opt}");
    }
}

#[test]
fn bad_input_gives_one_line_and_a_nonzero_exit() {
    let dir = tmp();
    // A missing file.
    let e = one_line_error(&run(&["--image", "/no/such/photo.png"]));
    assert!(e.contains("/no/such/photo.png"), "{e}");
    // An image that does not decode.
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"this is not a png").unwrap();
    let e = one_line_error(&run(&["--image", bad.to_str().unwrap()]));
    assert!(e.contains("broken.png"), "{e}");
    // Weights for another model.
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/squeezenet1_1.safetensors");
    let e = one_line_error(&run(&["--model", "resnet18", "--weights", weights.to_str().unwrap()]));
    assert!(e.contains("not a resnet18"), "{e}");
    // A target class out of range.
    let e = one_line_error(&run(&["--target", "1000"]));
    assert!(e.contains("1000"), "{e}");
    // An unknown model.
    one_line_error(&run(&["--model", "alexnet"]));
    // An unknown rule, an unknown device.
    let e = one_line_error(&run(&["--rule", "magic"]));
    assert!(e.contains("magic") && e.contains("lrp-a1b0"), "{e}");
    one_line_error(&run(&["--device", "tpu"]));
    // A truncated photo is an error, not a half-grey picture explained.
    let photo = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images/voc/rgb.jpg")).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &photo[..photo.len() / 2]).unwrap();
    let e = one_line_error(&run(&["--image", cut.to_str().unwrap()]));
    assert!(e.contains("cut.jpg") && e.contains("truncated"), "{e}");
    let png = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images/chelsea.png")).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &png[..png.len() - 20]).unwrap();
    let e = one_line_error(&run(&["--image", cut.to_str().unwrap()]));
    assert!(e.contains("cut.png") && e.contains("truncated"), "{e}");
    // Not a file: a device is not read until memory runs out.
    #[cfg(unix)]
    {
        let e = one_line_error(&run(&["--image", "/dev/zero"]));
        assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{e}");
    }
    // A photo too large for the memory bound is refused before the work allocates (without the
    // flag, `--size 5000` grew to 11 GB and aborted).
    let e = one_line_error(&run(&["--size", "5000", "--max-memory", "1"]));
    assert!(e.contains("bound"), "{e}");
    one_line_error(&run(&["--max-memory", "0"]));
    // Sizes out of range.
    let e = one_line_error(&run(&["--size", "0"]));
    assert!(e.contains("size"), "{e}");
    let e = one_line_error(&run(&["--size", "4000000000"]));
    assert!(e.contains("size"), "{e}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(binary("explain"))
        .args(["--out", tmp().join("closed").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the example writes anything (as `… | head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn evaluate_ranks_methods_on_the_bundled_voc_photo() {
    let out_dir = tmp().join("evaluate");
    let out = run_example(
        "evaluate",
        &[
            "--methods",
            "rap,lrp-a1b0,gradient,integrated-gradients,guided-backprop",
            "--steps",
            "3",
            "--ig-steps",
            "4",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["Outside-inside ratio", "ALL", "POS", "PIX ACC (%)", "mIoU (%)", "AOPC LeRF", "RAP", "GuidedBP"] {
        assert!(stdout.contains(needle), "missing `{needle}` in {stdout}");
    }
    for file in ["perturbation.png", "heatmaps_rgb.png"] {
        let img = image::open(out_dir.join(file)).unwrap();
        assert!(img.width() > 500, "{file}");
    }
}

#[test]
fn evaluate_bad_input_is_one_line() {
    let e = one_line_error(&run_example("evaluate", &["--methods", "magic"]));
    assert!(e.contains("unknown method `magic`"), "{e}");
    let e = one_line_error(&run_example("evaluate", &["--data", "/nonexistent/photos"]));
    assert!(e.contains("/nonexistent/photos"), "{e}");
    let e = one_line_error(&run_example("evaluate", &["--threshold", "p120", "--steps", "1"]));
    assert!(e.contains("percentile"), "{e}");
    // Counts out of range, the largest integers included: one line each, no overflow.
    for (flag, value, needle) in [
        ("--steps", "0", "steps"),
        ("--steps", "18446744073709551615", "steps"),
        ("--pixels", "0", "pixels_per_step"),
        ("--pixels", "18446744073709551615", "steps"),
        ("--images-per-batch", "0", "images_per_batch"),
        ("--batch", "0", "batch"),
        ("--size", "0", "size"),
        ("--ig-steps", "0", "steps"),
    ] {
        let mut args = vec![flag, value, "--methods", "integrated-gradients"];
        if flag == "--pixels" && value != "0" {
            args.extend(["--steps", "18446744073709551615"]);
        }
        let e = one_line_error(&run_example("evaluate", &args));
        assert!(e.contains(needle), "{flag} {value}: {e}");
    }
}

#[test]
fn an_onnx_model_needs_the_onnx_feature() {
    // The example is built with the default features here, which do not read ONNX files.
    let out = run(&["--onnx", "model.onnx"]);
    let e = one_line_error(&out);
    assert!(e.contains("--features onnx"), "{e}");
}
