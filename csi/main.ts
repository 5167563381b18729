export function main(_argv: string[]): Promise<number> {
  return Promise.reject(new Error("the CSI plugin is being written"));
}
