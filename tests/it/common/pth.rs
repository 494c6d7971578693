//! A minimal writer of PyTorch's zip checkpoint format (`torch.save(state_dict)`), so tests can
//! make `.pth` files in torchvision naming without Python: a protocol-2 pickle of an
//! `OrderedDict` of `torch._utils._rebuild_tensor_v2` calls over float32 storages.

use rap_attrib::spec::HostTensor;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: usize) {
    out.push(b'J');
    out.extend((v as i32).to_le_bytes());
}

fn tuple(out: &mut Vec<u8>, items: &[usize]) {
    if items.is_empty() {
        out.push(b')');
        return;
    }
    out.push(b'(');
    for &i in items {
        int(out, i);
    }
    out.push(b't');
}

/// Writes `params` (as float32) to a `.pth` file under the archive folder `archive/`.
pub fn write_pth(params: &HashMap<String, HostTensor>, path: &Path) {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    let mut pkl = vec![0x80, 2];
    pkl.extend(b"ccollections\nOrderedDict\n)R(");
    for (i, name) in names.iter().enumerate() {
        let t = &params[*name];
        unicode(&mut pkl, name);
        pkl.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        pkl.push(b'(');
        unicode(&mut pkl, "storage");
        pkl.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut pkl, &i.to_string());
        unicode(&mut pkl, "cpu");
        int(&mut pkl, t.values.len());
        pkl.extend(b"tQ");
        int(&mut pkl, 0);
        tuple(&mut pkl, &t.shape);
        let mut strides = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * t.shape[d + 1];
        }
        tuple(&mut pkl, &strides);
        pkl.push(0x89); // NEWFALSE: requires_grad
        pkl.extend(b"ccollections\nOrderedDict\n)R");
        pkl.extend(b"tR");
    }
    pkl.extend(b"u.");
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&pkl).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, name) in names.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).unwrap();
        let bytes: Vec<u8> = params[*name].values.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}
