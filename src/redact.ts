/**
 * Last line of defence for text that leaves the process (CLI errors, error messages): replaces the
 * value of every secret-bearing environment variable with "[redacted]". The logger redacts by path;
 * this catches a secret that slipped into free text.
 */
const SECRET_NAME = /TOKEN|SECRET|PASSWORD|AUTH|KEY/i;

export function secretValues(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.entries(env)
    .filter(([name, value]) => SECRET_NAME.test(name) && value !== undefined && value.length >= 6)
    .map(([, value]) => value as string)
    .sort((a, b) => b.length - a.length);
}

export function redactSecrets(text: string, env: Readonly<Record<string, string | undefined>>): string {
  let out = text.replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/g, "$1[redacted]");
  for (const value of secretValues(env)) out = out.split(value).join("[redacted]");
  return out;
}
