/**
 * A minimal zip writer: STORE method (no compression — outputs are mostly
 * already-compressed media), UTF-8 names, streamed from files so large
 * outputs never sit in memory. No ZIP64: entries and the archive must stay
 * under 4 GiB, and at most 65535 entries.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

export interface ZipEntry {
  /** Path inside the archive, `/`-separated. */
  name: string;
  /** The content, in memory or as a file path. */
  source: Buffer | { file: string };
}

const LIMIT = 0xffffffff;

function dosDateTime(date: Date): { time: number; date: number } {
  return {
    time: (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2),
    date: ((Math.max(date.getFullYear(), 1980) - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
  };
}

async function checksum(source: ZipEntry['source']): Promise<{ crc: number; size: number }> {
  if (Buffer.isBuffer(source)) return { crc: crc32(source), size: source.length };
  let crc = 0;
  for await (const chunk of createReadStream(source.file)) crc = crc32(chunk as Buffer, crc);
  return { crc, size: (await stat(source.file)).size };
}

/** Writes `entries` as a zip file at `target`. */
export async function writeZip(target: string, entries: readonly ZipEntry[]): Promise<void> {
  if (entries.length > 0xffff) throw new Error(`a zip holds at most 65535 entries, got ${entries.length}`);
  const file = await open(target, 'w');
  try {
    const central: Buffer[] = [];
    const { time, date } = dosDateTime(new Date());
    let offset = 0;
    const write = async (bytes: Buffer) => {
      await file.write(bytes);
      offset += bytes.length;
    };
    for (const entry of entries) {
      const name = Buffer.from(entry.name, 'utf8');
      const { crc, size } = await checksum(entry.source);
      if (size >= LIMIT || offset + size >= LIMIT) throw new Error(`zip entry ${entry.name} does not fit a zip without ZIP64 (4 GiB)`);
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(20, 4); // version needed
      local.writeUInt16LE(0x0800, 6); // UTF-8 names
      local.writeUInt16LE(0, 8); // STORE
      local.writeUInt16LE(time, 10);
      local.writeUInt16LE(date, 12);
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(size, 18);
      local.writeUInt32LE(size, 22);
      local.writeUInt16LE(name.length, 26);
      local.writeUInt16LE(0, 28);

      const header = Buffer.alloc(46);
      header.writeUInt32LE(0x02014b50, 0);
      header.writeUInt16LE(20, 4); // made by
      local.copy(header, 6, 4, 30); // version needed … name length, as in the local header
      header.writeUInt16LE(0, 32); // extra, comment, disk, internal attributes: 0
      header.writeUInt32LE(0, 38);
      header.writeUInt32LE(offset, 42);
      central.push(header, name);

      await write(Buffer.concat([local, name]));
      if (Buffer.isBuffer(entry.source)) await write(entry.source);
      else for await (const chunk of createReadStream(entry.source.file)) await write(chunk as Buffer);
    }
    const directory = Buffer.concat(central);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(directory.length, 12);
    end.writeUInt32LE(offset, 16);
    await write(Buffer.concat([directory, end]));
  } finally {
    await file.close();
  }
}
