//! A byte range of a file or block device seen as a whole device, so a
//! filesystem library can format and fill one partition of a disk image.

use std::io::{self, Read, Seek, SeekFrom, Write};

pub struct Region<'a, F> {
    inner: &'a mut F,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a, F: Seek> Region<'a, F> {
    pub fn new(inner: &'a mut F, start: u64, len: u64) -> Self {
        Self {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    fn remaining(&self, want: usize) -> usize {
        want.min(self.len.saturating_sub(self.pos) as usize)
    }
}

impl<F: Read + Seek> Read for Region<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.remaining(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<F: Write + Seek> Write for Region<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.remaining(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F> Seek for Region<'_, F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match pos {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_and_writes_stay_inside() {
        let mut disk = Cursor::new(vec![0u8; 16]);
        {
            let mut r = Region::new(&mut disk, 4, 8);
            assert_eq!(r.write(b"0123456789").unwrap(), 8);
            assert!(r.write(b"x").is_err());
            r.seek(SeekFrom::Start(2)).unwrap();
            let mut b = [0u8; 4];
            r.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"2345");
            assert!(r.seek(SeekFrom::Start(9)).is_err());
            assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), 7);
        }
        assert_eq!(
            &disk.get_ref()[..],
            b"\x00\x00\x00\x0001234567\x00\x00\x00\x00"
        );
    }
}
