//! PyTorch checkpoints: the zip format (torch ≥ 1.6, read through candle) and the legacy
//! format (a stream of pickles followed by raw storages; torchvision's older `.pth` files such
//! as `mobilenet_v2-b0353104.pth` are in it). A state dict nested under `state_dict`, `model`
//! or `model_state_dict` (training checkpoints) is found too.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

/// Keys under which training scripts nest the state dict.
const NESTED_KEYS: [&str; 4] = ["state_dict", "model", "model_state_dict", "state_dict_ema"];

/// The first bytes of a legacy checkpoint: a pickle of torch's magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// Reads every tensor of a PyTorch checkpoint; the error is a reason for the user.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let mut head = [0u8; 15];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let n = f.read(&mut head).map_err(|e| e.to_string())?;
        if n < 4 {
            return Err("the file is too short to be a PyTorch checkpoint".into());
        }
    }
    if head[..2] == *b"PK" {
        read_zip(path)
    } else if head == LEGACY_MAGIC {
        read_legacy(path)
    } else {
        Err("not a PyTorch checkpoint (neither the zip nor the legacy pickle format)".into())
    }
}

fn read_zip(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let top = candle_core::pickle::read_all(path).map_err(|e| e.to_string())?;
    if !top.is_empty() {
        return Ok(top);
    }
    for key in NESTED_KEYS {
        if let Ok(t) = candle_core::pickle::read_all_with_key(path, Some(key)) {
            if !t.is_empty() {
                return Ok(t);
            }
        }
    }
    Err("no tensors found at the top level nor under state_dict/model/model_state_dict".into())
}

fn read_legacy(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: the map is read-only and dropped before return; a checkpoint changed while it is
    // being read yields wrong numbers or an error, not undefined behaviour in our code.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    let mut cur = Cursor::new(&map[..]);
    cur.set_position(LEGACY_MAGIC.len() as u64);
    let _protocol = read_pickle(&mut cur)?;
    let _sys_info = read_pickle(&mut cur)?;
    let state = find_state_dict(read_pickle(&mut cur)?)?;
    let keys = match read_pickle(&mut cur)? {
        Object::List(keys) | Object::Tuple(keys) => keys,
        other => {
            return Err(format!(
                "expected the list of storage keys, found {other:?}"
            ))
        }
    };
    // Storages follow in key order, each as a little-endian u64 element count and its bytes.
    let mut infos = Vec::new();
    for (name, value) in state {
        if let Ok(Some(info)) = value.into_tensor_info(name, Path::new("")) {
            infos.push(info);
        }
    }
    let elem_size: HashMap<String, usize> = infos
        .iter()
        .map(|i| (storage_key(&i.path).to_string(), i.dtype.size_in_bytes()))
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = cur.position() as usize;
    for key in keys {
        let key = match key {
            Object::Unicode(k) => k,
            other => return Err(format!("unexpected storage key {other:?}")),
        };
        let numel = map
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or("the file ends inside the storage table (truncated?)")?;
        pos += 8;
        // A storage no tensor refers to still has to be skipped, but its element size is
        // unknown; such files are not produced by torch.save of a state dict.
        let es = *elem_size
            .get(&key)
            .ok_or_else(|| format!("storage {key} is used by no tensor"))?;
        let len = numel * es;
        let bytes = map
            .get(pos..pos + len)
            .ok_or_else(|| format!("storage {key} runs past the end of the file (truncated?)"))?;
        storages.insert(key, bytes);
        pos += len;
    }
    let mut out = Vec::with_capacity(infos.len());
    for info in infos {
        let key = storage_key(&info.path);
        let storage = storages
            .get(key)
            .ok_or_else(|| format!("tensor {} refers to missing storage {key}", info.name))?;
        if !info.layout.is_contiguous() {
            return Err(format!(
                "tensor {} is stored non-contiguously; re-save the checkpoint with contiguous tensors",
                info.name
            ));
        }
        let start = info.layout.start_offset();
        let len = info.layout.shape().elem_count() * info.dtype.size_in_bytes();
        let bytes = storage
            .get(start..start + len)
            .ok_or_else(|| format!("tensor {} lies outside its storage", info.name))?;
        let t = Tensor::from_raw_buffer(bytes, info.dtype, info.layout.dims(), &Device::Cpu)
            .map_err(|e| format!("tensor {}: {e}", info.name))?;
        if info.dtype != DType::I64 {
            out.push((info.name, t));
        }
    }
    Ok(out)
}

fn storage_key(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn read_pickle(cur: &mut Cursor<&[u8]>) -> Result<Object, String> {
    let mut stack = Stack::empty();
    stack
        .read_loop(cur)
        .map_err(|e| format!("damaged pickle: {e}"))?;
    stack.finalize().map_err(|e| format!("damaged pickle: {e}"))
}

/// The dict of tensors: the object itself or one nested under a known key.
fn find_state_dict(obj: Object) -> Result<Vec<(Object, Object)>, String> {
    let entries = match obj {
        Object::Dict(entries) => entries,
        other => return Err(format!("expected a state dict, found {other:?}")),
    };
    let has_tensors = entries
        .iter()
        .any(|(_, v)| matches!(v, Object::Reduce { .. }));
    if has_tensors {
        return Ok(entries);
    }
    for (k, v) in entries {
        if let Object::Unicode(k) = &k {
            if NESTED_KEYS.contains(&k.as_str()) {
                return find_state_dict(v);
            }
        }
    }
    Err("no tensors found at the top level nor under state_dict/model/model_state_dict".into())
}
