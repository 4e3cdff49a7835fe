// Fills an etcd (started with a small --quota-backend-bytes) with big values
// outside Palisade's prefix until it raises its NOSPACE alarm.
import type { Etcd3 } from "etcd3";

export async function fillUntilNoSpace(client: Etcd3): Promise<void> {
  const big = Buffer.alloc(256 * 1024, "x");
  for (let i = 0; ; i++) {
    try {
      await client.put(`/filler/${i}`).value(big);
    } catch (e) {
      if (!(e as Error).message.includes("database space exceeded")) throw e;
      return;
    }
    if (i > 100) throw new Error("etcd never raised NOSPACE");
  }
}
